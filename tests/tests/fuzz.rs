//! Seeded random inputs over HTTP: the list-query grammar and the incident
//! JSON body. Every answer is 2xx or a 4xx problem, never a 5xx.

use keel_tests::*;
use serde_json::{Value, json};

/// xorshift64*: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const PARAMS: &[&str] = &[
    "state",
    "priority",
    "assignee",
    "group",
    "requester",
    "major",
    "created_after",
    "created_before",
    "updated_after",
    "updated_before",
    "q",
    "sort",
    "limit",
    "cursor",
    "sla_state",
    "sla_due_before",
    "unknown",
];
const VALUES: &[&str] = &[
    "",
    "new",
    "new,in_progress",
    "closed,,",
    "1",
    "1,2,9",
    "0",
    "200",
    "201",
    "-1",
    "99999999999999999999",
    "none",
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "true",
    "maybe",
    "2026-01-01T00:00:00Z",
    "2026-13-45",
    "-created_at",
    "+priority",
    "title",
    "'; DROP TABLE incidents; --",
    "\" OR 1=1 --",
    "NEAR(a b)",
    "a* OR b",
    "printer",
    "{}",
    "[]",
    "%00",
    "\u{0}",
    "é",
    "日本語",
    "eyJzIjoiY3JlYXRlZF9hdCJ9",
    "breached",
    "paused",
];

both!(random_list_queries_never_fail_the_server);
async fn random_list_queries_never_fail_the_server(app: TestApp) {
    let desk = app.desk().await;
    app.simple_incident(&desk.requester.token, "Fuzz target one")
        .await;
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    for case in 0..300 {
        let n = 1 + rng.next() % 4;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for _ in 0..n {
            let mut v = rng.pick(VALUES).to_owned();
            if rng.next().is_multiple_of(10) {
                v = v.repeat(1 + (rng.next() % 300) as usize);
            }
            pairs.push((rng.pick(PARAMS).to_owned(), v));
        }
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let token = if rng.next().is_multiple_of(2) {
            &desk.agent.token
        } else {
            &desk.requester.token
        };
        let resp = app
            .get(&incidents_query(&refs), token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(status < 500, "case {case} {pairs:?} got {status}");
        if status >= 400 {
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            assert!(
                ct.starts_with("application/problem+json"),
                "case {case} {pairs:?}: {ct}"
            );
        }
    }
    app.finish().await;
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.next() % 8 {
        0 => Value::Null,
        1 => json!(rng.next().is_multiple_of(2)),
        2 => json!((rng.next() % 10) as i64 - 3),
        3 => json!(f64::from((rng.next() % 1000) as u32) / 7.0),
        4 if depth < 4 => Value::Array(
            (0..rng.next() % 3)
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        5 if depth < 4 => json!({"x": random_value(rng, depth + 1)}),
        _ => json!(rng.pick(VALUES).repeat(1 + (rng.next() % 3) as usize)),
    }
}

both!(random_incident_bodies_never_fail_the_server);
async fn random_incident_bodies_never_fail_the_server(app: TestApp) {
    let desk = app.desk().await;
    let fields = [
        "title",
        "description",
        "impact",
        "urgency",
        "priority",
        "category",
        "major",
        "requester",
        "assignment_group",
        "assignee",
        "bogus",
    ];
    let mut rng = Rng(0x0dd_ba11_5eed_1234);
    for case in 0..200 {
        let mut body = serde_json::Map::new();
        for f in fields {
            if rng.next().is_multiple_of(2) {
                body.insert(f.to_owned(), random_value(&mut rng, 0));
            }
        }
        let token = if rng.next().is_multiple_of(2) {
            &desk.agent.token
        } else {
            &desk.requester.token
        };
        let resp = app
            .post("/api/v1/incidents", token)
            .json(&Value::Object(body.clone()))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(status < 500, "case {case} {body:?} got {status}");
        assert!(
            status == 201 || (400..500).contains(&status),
            "case {case}: {status}"
        );
    }
    app.finish().await;
}
