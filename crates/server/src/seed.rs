//! `keel seed`: fills a database with realistic synthetic data for
//! benchmarks. Titles and descriptions are composed from an IT vocabulary
//! (so full-text search has something to find, unevenly), states and
//! priorities follow the skew of a real desk (most old tickets are closed,
//! most tickets are low priority), a few agents carry most of the work, and
//! creation times spread over two years. Unless told not to, it first sets
//! up the SLA a desk would have (an office-hours calendar and three policies
//! by priority) where there is none, so the incidents carry SLA timers like
//! a lived-in desk's.
//! Deterministic for a given `--seed`.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use keel_core::Role;
use keel_incident::PriorityMatrix;
use keel_sla::policy::Conditions;
use keel_sla::{CalendarSpec, Holiday, PolicySpec, Target, TargetKind, WeekHours};
use keel_store::Store;
use keel_store::seed::{SeedComment, SeedGroup, SeedIncident, SeedUser};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub incidents: u64,
    pub users: u64,
    pub groups: u64,
    pub comments_per_incident: u32,
    pub seed: u64,
    /// Sets up SLA policies first, unless the database has some, so that
    /// incidents get their timers. Without it, incidents get timers only
    /// from policies already there.
    pub sla: bool,
    /// PHC hash of the password every seeded user gets (hashed once).
    pub password_hash: String,
    pub progress: bool,
}

/// What was loaded, and how long it took.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub users: u64,
    pub agents: u64,
    pub groups: u64,
    pub incidents: u64,
    pub comments: u64,
    /// SLA policies created, and the timers the incidents got.
    pub sla_policies: u64,
    pub sla_timers: u64,
    pub first_number: i64,
    pub seconds: f64,
}

/// Incidents per transaction.
const BATCH: usize = 2_000;

const GROUPS: &[(&str, &str)] = &[
    ("Service Desk", "First line: triage and quick fixes"),
    ("Network", "LAN, Wi-Fi, VPN and firewalls"),
    ("Workplace", "Laptops, desktops, printers and phones"),
    ("Identity", "Accounts, passwords, SSO and access requests"),
    ("Messaging", "Email, calendars and Teams"),
    ("Applications", "Line-of-business applications"),
    ("Database", "Database servers and backups"),
    ("Infrastructure", "Servers, storage and virtualisation"),
    ("Security", "Malware, phishing and vulnerabilities"),
    ("Facilities", "Badges, meeting rooms and AV equipment"),
];

const FIRST: &[&str] = &[
    "Alice", "Bob", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kavya",
    "Liam", "Mei", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Victor",
    "Wanda", "Xavier", "Yara", "Zoltan",
];
const LAST: &[&str] = &[
    "Andersen",
    "Baker",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Hoffmann",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lambert",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Petrov",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Urban",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmermann",
];

/// Things that break, the group that fixes them, and a category.
const SUBJECTS: &[(&str, usize, &str)] = &[
    ("printer", 2, "hardware"),
    ("laptop", 2, "hardware"),
    ("docking station", 2, "hardware"),
    ("monitor", 2, "hardware"),
    ("desk phone", 2, "hardware"),
    ("VPN", 1, "network"),
    ("Wi-Fi", 1, "network"),
    ("network drive", 1, "network"),
    ("Outlook", 4, "software"),
    ("shared mailbox", 4, "software"),
    ("Teams", 4, "software"),
    ("calendar", 4, "software"),
    ("password", 3, "access"),
    ("SSO login", 3, "access"),
    ("MFA token", 3, "access"),
    ("SAP", 5, "software"),
    ("payroll application", 5, "software"),
    ("CRM", 5, "software"),
    ("reporting database", 6, "database"),
    ("nightly backup", 6, "database"),
    ("file server", 7, "infrastructure"),
    ("virtual machine", 7, "infrastructure"),
    ("antivirus", 8, "security"),
    ("phishing email", 8, "security"),
    ("badge reader", 9, "facilities"),
    ("meeting room projector", 9, "facilities"),
];

const SYMPTOMS: &[&str] = &[
    "does not start",
    "is very slow",
    "keeps disconnecting",
    "shows error 0x80070005",
    "stopped working after the update",
    "is unreachable",
    "rejects my credentials",
    "crashes when saving",
    "prints blank pages",
    "freezes every few minutes",
    "cannot be found",
    "needs to be replaced",
    "times out",
    "shows a certificate warning",
    "is locked",
];

const PLACES: &[&str] = &[
    "on the 3rd floor",
    "in the Berlin office",
    "in building B",
    "for the whole finance team",
    "at reception",
    "in meeting room Everest",
    "since this morning",
    "when working from home",
    "for new starters",
    "in the warehouse",
];

const DETAILS: &[&str] = &[
    "I restarted it twice and the problem is still there.",
    "Colleagues next to me have the same issue.",
    "It worked fine yesterday afternoon.",
    "The error appears right after logging in.",
    "This blocks month-end closing, please hurry.",
    "I already cleared the cache and reinstalled the client.",
    "A screenshot of the message is attached to my email.",
    "It only happens on the docking station, not on battery.",
    "The toner was replaced last week.",
    "Happens with both the wired and the wireless connection.",
    "Our customer demo starts at 14:00.",
    "The helpdesk hotline suggested opening a ticket.",
];

const REPLIES: &[&str] = &[
    "Thanks, we are looking into it.",
    "Could you tell us the asset tag of the device?",
    "We pushed a fix, please try again and let us know.",
    "Restarting the service resolved it on our side.",
    "Escalated to the second line.",
    "Waiting for the supplier to ship a replacement part.",
    "The issue is linked to last night's change window.",
    "Works again for me, thank you!",
    "Still broken after the restart, unfortunately.",
    "Collected logs from the event viewer.",
];

const RESOLUTIONS: &[&str] = &[
    "solved_permanently",
    "solved_workaround",
    "not_reproducible",
    "resolved_by_caller",
    "duplicate",
];

/// Loads `plan` into `store`, appending after the incidents already there.
pub async fn run(store: &Store, plan: &SeedPlan) -> Result<SeedReport, keel_store::StoreError> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    // Every seeded time is this one moved by whole seconds, minutes or
    // days, so all are at the microseconds Keel's own writes keep.
    let now = keel_core::time::now();
    let two_years = Duration::days(730);
    let tag = format!("{:x}", rng.random::<u32>());

    let hash = &plan.password_hash;

    // People: about one agent for every ten users, at least two per group.
    let groups_n = plan.groups.max(1);
    let agents_n = (plan.users / 10).max(groups_n * 2).min(plan.users.max(1));
    let requesters_n = plan.users.saturating_sub(agents_n).max(1);
    let mut users = Vec::new();
    let person = |role: Role, n: u64, rng: &mut StdRng| {
        let first = FIRST.choose(rng).copied().unwrap_or("Pat");
        let last = LAST.choose(rng).copied().unwrap_or("Doe");
        let kind = if role == Role::Agent { "agent" } else { "user" };
        let username = format!("{kind}{n:06}-{tag}");
        SeedUser {
            id: Uuid::now_v7(),
            email: format!("{username}@seed.example.com"),
            username,
            display_name: format!("{first} {last}"),
            password_hash: hash.clone(),
            roles: vec![role],
            created_at: now - two_years - Duration::days(30),
        }
    };
    for n in 0..agents_n {
        users.push(person(Role::Agent, n, &mut rng));
    }
    for n in 0..requesters_n {
        users.push(person(Role::Requester, n, &mut rng));
    }
    let agents: Vec<Uuid> = users[..agents_n as usize].iter().map(|u| u.id).collect();
    let requesters: Vec<Uuid> = users[agents_n as usize..].iter().map(|u| u.id).collect();

    // Agents are dealt round-robin into groups; group `g` has agents g, g+G, ...
    let mut groups: Vec<SeedGroup> = (0..groups_n)
        .map(|g| {
            let (name, description) = GROUPS[g as usize % GROUPS.len()];
            let round = g as usize / GROUPS.len();
            SeedGroup {
                id: Uuid::now_v7(),
                name: if round == 0 {
                    format!("{name} {tag}")
                } else {
                    format!("{name} {} {tag}", round + 1)
                },
                description: description.to_owned(),
                members: Vec::new(),
                created_at: now - two_years - Duration::days(30),
            }
        })
        .collect();
    for (n, a) in agents.iter().enumerate() {
        let g = n % groups.len();
        groups[g].members.push(*a);
    }
    store.seed_people(&users, &groups).await?;
    // A desk that has policies (an earlier seed's, say) keeps them.
    let sla_policies = if plan.sla && store.list_policies().await?.is_empty() {
        seed_sla(store, &tag).await?
    } else {
        0
    };

    let matrix = PriorityMatrix::default();
    let first_number = store.next_incident_number().await?;
    let total = plan.incidents;
    let bar = if plan.progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} incidents ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );

    let span_secs = two_years.num_seconds() as f64;
    let mut comments_total = 0u64;
    let mut timers_total = 0u64;
    let mut done = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    while done < total {
        batch.clear();
        let n = (total - done).min(BATCH as u64);
        for k in 0..n {
            let i = done + k;
            // Evenly spread over two years, oldest first, with jitter.
            let frac = (i as f64 + rng.random::<f64>()) / total as f64;
            let created = now - two_years + Duration::seconds((frac * span_secs) as i64);
            let number = first_number + i as i64;
            batch.push(incident(
                &mut rng,
                Ctx {
                    number,
                    created,
                    now,
                    matrix: &matrix,
                    groups: &groups,
                    requesters: &requesters,
                    comments: plan.comments_per_incident,
                },
            ));
        }
        comments_total += batch.iter().map(|i| i.comments.len() as u64).sum::<u64>();
        timers_total += store.seed_incidents(&batch).await?;
        done += n;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    store.analyze().await?;
    Ok(SeedReport {
        users: users.len() as u64,
        agents: agents_n,
        groups: groups_n,
        incidents: total,
        comments: comments_total,
        sla_policies,
        sla_timers: timers_total,
        first_number,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A seeded SLA policy.
struct SeedPolicy {
    name: &'static str,
    priorities: &'static [u8],
    targets: &'static [(TargetKind, i64)],
    /// Counted in office hours (else around the clock).
    office_hours: bool,
}

const HOUR: i64 = 3_600;
const OFFICE_DAY: i64 = 10 * HOUR;

const SLA_POLICIES: [SeedPolicy; 3] = [
    SeedPolicy {
        name: "Urgent",
        priorities: &[1, 2],
        targets: &[
            (TargetKind::FirstResponse, HOUR / 4),
            (TargetKind::Resolution, 4 * HOUR),
            (TargetKind::NextUpdate, HOUR),
        ],
        office_hours: false,
    },
    SeedPolicy {
        name: "Standard",
        priorities: &[3],
        targets: &[
            (TargetKind::FirstResponse, 4 * HOUR),
            (TargetKind::Resolution, 2 * OFFICE_DAY),
        ],
        office_hours: true,
    },
    SeedPolicy {
        name: "Low",
        priorities: &[4, 5],
        targets: &[
            (TargetKind::FirstResponse, OFFICE_DAY),
            (TargetKind::Resolution, 5 * OFFICE_DAY),
        ],
        office_hours: true,
    },
];

/// A desk's usual SLA: urgent work around the clock, the rest in office
/// hours (Monday to Friday, 08:00-18:00 in Berlin, ten hours a day, closed
/// on Germany's five fixed public holidays).
/// Returns how many policies it made.
async fn seed_sla(store: &Store, tag: &str) -> Result<u64, keel_store::StoreError> {
    let office = store
        .create_calendar(
            &format!("Office hours {tag}"),
            CalendarSpec {
                tz: "Europe/Berlin".to_owned(),
                week: WeekHours::weekdays(8, 18),
                holidays: [(1, 1), (5, 1), (10, 3), (12, 25), (12, 26)]
                    .into_iter()
                    .map(|(month, day)| Holiday::Yearly { month, day })
                    .collect(),
                exceptions: Vec::new(),
            },
        )
        .await?;
    let mut made = 0;
    for (position, p) in (1..).zip(SLA_POLICIES) {
        let spec = PolicySpec {
            conditions: Conditions {
                priorities: p.priorities.to_vec(),
                ..Conditions::default()
            },
            targets: p
                .targets
                .iter()
                .map(|&(kind, secs)| Target {
                    kind,
                    secs,
                    calendar: p.office_hours.then_some(office.id),
                })
                .collect(),
            pause_states: vec!["on_hold".to_owned()],
            warn_percents: vec![75, 90],
            escalations: Vec::new(),
        };
        store
            .create_policy(&format!("{} {tag}", p.name), position * 10, true, spec)
            .await?;
        made += 1;
    }
    Ok(made)
}

struct Ctx<'a> {
    number: i64,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    matrix: &'a PriorityMatrix,
    groups: &'a [SeedGroup],
    requesters: &'a [Uuid],
    comments: u32,
}

/// Picks index `0..n` with a skew towards the front (a few carry most).
fn skewed(rng: &mut StdRng, n: usize) -> usize {
    let x: f64 = rng.random();
    ((x * x * x) * n as f64) as usize % n.max(1)
}

/// Impact or urgency 1..=3, mostly low.
fn level(rng: &mut StdRng) -> u8 {
    match rng.random_range(0..100) {
        0..10 => 1,
        10..40 => 2,
        _ => 3,
    }
}

fn incident(rng: &mut StdRng, c: Ctx<'_>) -> SeedIncident {
    let (subject, group_hint, category) = *SUBJECTS.choose(rng).unwrap_or(&SUBJECTS[0]);
    let symptom = SYMPTOMS.choose(rng).copied().unwrap_or("is broken");
    let place = PLACES.choose(rng).copied().unwrap_or("");
    let title = format!("{} {symptom} {place}", capitalise(subject));
    let mut description = format!("The {subject} {symptom} {place}.");
    for _ in 0..rng.random_range(1..=3) {
        description.push(' ');
        description.push_str(DETAILS.choose(rng).copied().unwrap_or(""));
    }

    let impact = level(rng);
    let urgency = level(rng);
    let priority = match (
        c.matrix.impact(i64::from(impact)),
        c.matrix.urgency(i64::from(urgency)),
    ) {
        (Ok(i), Ok(u)) => c.matrix.priority(i, u).get(),
        _ => 5,
    };

    // Most tickets go to the group of their subject; a few to the desk.
    let group = if rng.random_bool(0.8) {
        &c.groups[group_hint % c.groups.len()]
    } else {
        &c.groups[skewed(rng, c.groups.len())]
    };
    let requester = c.requesters[skewed(rng, c.requesters.len())];

    // Older tickets are mostly finished; recent ones are still open.
    let age_days = (c.now - c.created).num_days();
    let roll = rng.random_range(0..100);
    let state = match (age_days, roll) {
        (0..=2, 0..40) => "new",
        (0..=2, 40..80) => "in_progress",
        (0..=2, 80..90) => "on_hold",
        (0..=2, _) => "resolved",
        (3..=14, 0..5) => "new",
        (3..=14, 5..25) => "in_progress",
        (3..=14, 25..35) => "on_hold",
        (3..=14, 35..70) => "resolved",
        (3..=14, 70..95) => "closed",
        (3..=14, _) => "cancelled",
        (_, 0..1) => "in_progress",
        (_, 1..2) => "on_hold",
        (_, 2..95) => "closed",
        (_, _) => "cancelled",
    };
    let open_or_unassigned = state == "new" || (state == "cancelled" && rng.random_bool(0.5));
    let assignee = if open_or_unassigned || group.members.is_empty() {
        None
    } else {
        Some(group.members[skewed(rng, group.members.len())])
    };
    let minutes = |rng: &mut StdRng, lo: i64, hi: i64| Duration::minutes(rng.random_range(lo..hi));
    // What happened after an incident was raised happened before now: the
    // newest incidents' responses, cancellations and comments would
    // otherwise fall in the next hours.
    let by_now = |t: DateTime<Utc>| t.min(c.now).max(c.created);
    let first_response = assignee.map(|_| by_now(c.created + minutes(rng, 2, 240)));
    let resolved = match state {
        "resolved" | "closed" => {
            let mut at = c.created + minutes(rng, 30, 60 * 24 * 5);
            if state == "resolved" {
                // Still awaiting confirmation: resolved within the last six
                // days, or the server's auto-close (after seven days by
                // default) would start closing them, unasked, the moment it
                // starts on the seeded data, in the middle of a benchmark.
                at = at.max(c.now - Duration::days(6));
            }
            Some(at.min(c.now - Duration::minutes(1)).max(c.created))
        }
        _ => None,
    };
    let closed = match (state, resolved) {
        ("closed", Some(r)) => Some((r + Duration::days(7)).min(c.now)),
        _ => None,
    };
    let cancelled = (state == "cancelled").then(|| by_now(c.created + minutes(rng, 5, 600)));

    let mut comments = Vec::new();
    let mut at = c.created;
    for _ in 0..c.comments {
        at += minutes(rng, 5, 600);
        let by_agent = assignee.is_some() && rng.random_bool(0.6);
        let internal = by_agent && rng.random_bool(0.3);
        comments.push(SeedComment {
            id: Uuid::now_v7(),
            author_id: if by_agent {
                assignee.unwrap_or(requester)
            } else {
                requester
            },
            body: REPLIES.choose(rng).copied().unwrap_or("ok").to_owned(),
            internal,
            created_at: by_now(at),
        });
    }
    let last = [Some(c.created), first_response, resolved, closed, cancelled]
        .into_iter()
        .flatten()
        .chain(comments.iter().map(|c| c.created_at))
        .max()
        .unwrap_or(c.created);

    SeedIncident {
        id: Uuid::now_v7(),
        number: c.number,
        title,
        description,
        impact,
        urgency,
        priority,
        category: Some(category.to_owned()),
        major: priority == 1 && rng.random_bool(0.05),
        state,
        hold_reason: (state == "on_hold").then(|| {
            *["awaiting_requester", "awaiting_supplier", "awaiting_change"]
                .choose(rng)
                .unwrap_or(&"awaiting_requester")
        }),
        resolution_code: resolved.map(|_| *RESOLUTIONS.choose(rng).unwrap_or(&RESOLUTIONS[0])),
        resolution_notes: resolved.map(|_| "Fixed; see the comments.".to_owned()),
        requester_id: requester,
        assignment_group_id: Some(group.id),
        assignee_id: assignee,
        reassignment_count: if rng.random_bool(0.15) { 1 } else { 0 },
        created_at: c.created,
        updated_at: last,
        first_response_at: first_response,
        resolved_at: resolved,
        closed_at: closed,
        cancelled_at: cancelled,
        comments,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_raised_a_minute_ago_has_no_history_in_the_future() {
        let now = keel_core::time::now();
        let members: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let groups = [SeedGroup {
            id: Uuid::now_v7(),
            name: "network".into(),
            description: "Routers".into(),
            members,
            created_at: now - Duration::days(800),
        }];
        let requesters: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let matrix = PriorityMatrix::default();
        let mut rng = StdRng::seed_from_u64(7);
        for number in 1..=500 {
            let i = incident(
                &mut rng,
                Ctx {
                    number,
                    created: now - Duration::minutes(1),
                    now,
                    matrix: &matrix,
                    groups: &groups,
                    requesters: &requesters,
                    comments: 3,
                },
            );
            let times = [
                Some(i.created_at),
                Some(i.updated_at),
                i.first_response_at,
                i.resolved_at,
                i.closed_at,
                i.cancelled_at,
            ];
            for t in times
                .into_iter()
                .flatten()
                .chain(i.comments.iter().map(|c| c.created_at))
            {
                assert!(t <= now, "{} at {t}, after {now}", i.number);
                assert!(
                    t >= i.created_at,
                    "{} at {t}, before it was raised",
                    i.number
                );
            }
        }
    }
}
