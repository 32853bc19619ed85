//! `/sla`: business calendars and SLA policies. Admins manage them; agents
//! read them. Timers themselves appear on each incident as `sla`.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use keel_core::Permission;
use keel_sla::{CalendarSpec, Exception, Holiday, WeekHours, holidays_from_ics};
use keel_store::sla::CalendarView;

use super::parse_id;
use crate::auth::Auth;
use crate::body::Json;
use crate::dto::{
    ExceptionDto, HolidayDto, NewSlaCalendar, NewSlaPolicy, Page, SlaCalendar, SlaCalendarUpdate,
    SlaPolicy, SlaPolicyUpdate, WeekDto,
};
use crate::error::{ApiError, Problem};
use crate::idempotency::IdempotencyKey;
use crate::state::AppState;

fn name(raw: &str) -> Result<String, ApiError> {
    keel_core::text::clean("name", raw, 100, true, false)
        .map_err(|e| ApiError::unprocessable("validation.invalid_text", "name", e.to_string()))
}

/// `"09:00-17:30"` → seconds of the day `[start, end)`.
fn parse_range(raw: &str) -> Result<(u32, u32), ApiError> {
    let bad = || {
        ApiError::unprocessable(
            "sla.invalid_hours",
            "week",
            format!(
                "`{}` is not a range like 09:00-17:00",
                raw.chars().take(20).collect::<String>()
            ),
        )
    };
    let (a, b) = raw.split_once('-').ok_or_else(bad)?;
    let secs = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 3600 + m * 60)
    };
    Ok((secs(a).ok_or_else(bad)?, secs(b).ok_or_else(bad)?))
}

fn fmt_secs(s: u32) -> String {
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

fn week_hours(w: &WeekDto) -> Result<WeekHours, ApiError> {
    let days = [
        &w.monday,
        &w.tuesday,
        &w.wednesday,
        &w.thursday,
        &w.friday,
        &w.saturday,
        &w.sunday,
    ];
    let mut out: [Vec<(u32, u32)>; 7] = Default::default();
    for (i, d) in days.iter().enumerate() {
        if d.len() > 24 {
            return Err(ApiError::unprocessable(
                "sla.invalid_hours",
                "week",
                "at most 24 ranges a day",
            ));
        }
        out[i] = d.iter().map(|r| parse_range(r)).collect::<Result<_, _>>()?;
    }
    Ok(WeekHours { days: out })
}

fn week_dto(w: &WeekHours) -> WeekDto {
    let f = |i: usize| {
        w.days[i]
            .iter()
            .map(|(a, b)| format!("{}-{}", fmt_secs(*a), fmt_secs(*b)))
            .collect()
    };
    WeekDto {
        monday: f(0),
        tuesday: f(1),
        wednesday: f(2),
        thursday: f(3),
        friday: f(4),
        saturday: f(5),
        sunday: f(6),
    }
}

fn holiday(h: &HolidayDto) -> Holiday {
    match h {
        HolidayDto::Date(d) => Holiday::Date(*d),
        HolidayDto::Yearly { month, day } => Holiday::Yearly {
            month: *month,
            day: *day,
        },
    }
}

fn holiday_dto(h: &Holiday) -> HolidayDto {
    match h {
        Holiday::Date(d) => HolidayDto::Date(*d),
        Holiday::Yearly { month, day } => HolidayDto::Yearly {
            month: *month,
            day: *day,
        },
    }
}

fn exception(e: &ExceptionDto) -> Result<Exception, ApiError> {
    let hours = e
        .hours
        .iter()
        .map(|r| parse_range(r))
        .collect::<Result<_, _>>()?;
    Ok(Exception {
        date: e.date,
        hours,
    })
}

fn exception_dto(e: &Exception) -> ExceptionDto {
    ExceptionDto {
        date: e.date,
        hours: e
            .hours
            .iter()
            .map(|(a, b)| format!("{}-{}", fmt_secs(*a), fmt_secs(*b)))
            .collect(),
    }
}

fn calendar(v: CalendarView) -> SlaCalendar {
    SlaCalendar {
        id: v.id,
        name: v.name,
        week: week_dto(&v.spec.week),
        holidays: v.spec.holidays.iter().map(holiday_dto).collect(),
        exceptions: v.spec.exceptions.iter().map(exception_dto).collect(),
        tz: v.spec.tz,
        created_at: v.created_at,
        updated_at: v.updated_at,
    }
}

/// List business calendars
///
/// Every calendar, by name. Agents and admins.
#[utoipa::path(tag = "sla", responses((status = 200, description = "Calendars", body = Page<SlaCalendar>)))]
#[get("/sla/calendars")]
pub async fn list_calendars(
    state: web::Data<AppState>,
    auth: Auth,
) -> Result<web::Json<Page<SlaCalendar>>, ApiError> {
    auth.require(Permission::SlaRead)?;
    let items = state.store.list_calendars().await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(calendar).collect(),
    )))
}

/// Create a business calendar
///
/// Admins only. Weekly working hours in local time of an IANA zone, plus
/// holidays; SLA targets measured in it count only working time, correctly
/// across daylight-saving changes.
#[utoipa::path(
    tag = "sla",
    request_body = NewSlaCalendar,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created", body = SlaCalendar),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sla/calendars")]
pub async fn create_calendar(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<NewSlaCalendar>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::SlaAdmin)?;
    let b = body.into_inner();
    let n = name(b.name.as_deref().unwrap_or(""))?;
    let tz = b.tz.ok_or_else(|| {
        ApiError::unprocessable(
            "sla.tz_required",
            "tz",
            "give the calendar an IANA time zone",
        )
    })?;
    let week = week_hours(&b.week.unwrap_or_default())?;
    let holidays = b.holidays.unwrap_or_default().iter().map(holiday).collect();
    let exceptions = b
        .exceptions
        .unwrap_or_default()
        .iter()
        .map(exception)
        .collect::<Result<_, _>>()?;
    let v = state
        .store
        .create_calendar(
            &n,
            CalendarSpec {
                tz,
                week,
                holidays,
                exceptions,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(calendar(v)))
}

/// Get a business calendar
#[utoipa::path(
    tag = "sla",
    params(("id" = Uuid, Path, description = "Calendar id")),
    responses(
        (status = 200, description = "The calendar", body = SlaCalendar),
        (status = 404, description = "No such calendar", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sla/calendars/{id}")]
pub async fn get_calendar(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<SlaCalendar>, ApiError> {
    auth.require(Permission::SlaRead)?;
    Ok(web::Json(calendar(
        state.store.get_calendar(parse_id(&id, "calendar")?).await?,
    )))
}

/// Update a business calendar
///
/// Admins only. Running timers measured in it use the new hours from now on.
#[utoipa::path(
    tag = "sla",
    params(("id" = Uuid, Path, description = "Calendar id")),
    request_body = SlaCalendarUpdate,
    responses(
        (status = 200, description = "Updated", body = SlaCalendar),
        (status = 404, description = "No such calendar", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/sla/calendars/{id}")]
pub async fn update_calendar(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<SlaCalendarUpdate>,
) -> Result<web::Json<SlaCalendar>, ApiError> {
    auth.require(Permission::SlaAdmin)?;
    let id = parse_id(&id, "calendar")?;
    let b = body.into_inner();
    let n = b.name.as_deref().map(name).transpose()?;
    let spec =
        if b.tz.is_some() || b.week.is_some() || b.holidays.is_some() || b.exceptions.is_some() {
            let current = state.store.get_calendar(id).await?.spec;
            Some(CalendarSpec {
                tz: b.tz.unwrap_or(current.tz),
                week: match &b.week {
                    Some(w) => week_hours(w)?,
                    None => current.week,
                },
                holidays: b
                    .holidays
                    .map_or(current.holidays, |h| h.iter().map(holiday).collect()),
                exceptions: match &b.exceptions {
                    Some(e) => e.iter().map(exception).collect::<Result<_, _>>()?,
                    None => current.exceptions,
                },
            })
        } else {
            None
        };
    Ok(web::Json(calendar(
        state.store.update_calendar(id, n.as_deref(), spec).await?,
    )))
}

/// Delete a business calendar
///
/// Admins only; refused with 409 while a policy or a timer uses it.
#[utoipa::path(
    tag = "sla",
    params(("id" = Uuid, Path, description = "Calendar id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such calendar", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "In use", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/sla/calendars/{id}")]
pub async fn delete_calendar(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::SlaAdmin)?;
    state
        .store
        .delete_calendar(parse_id(&id, "calendar")?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Import holidays from iCalendar
///
/// Admins only. The body is an `.ics` file (`text/calendar`, up to 256 KiB):
/// all-day events become holidays (yearly ones when they repeat every
/// year), added to the calendar's existing holidays.
#[utoipa::path(
    tag = "sla",
    params(("id" = Uuid, Path, description = "Calendar id")),
    request_body(content = String, content_type = "text/calendar"),
    responses(
        (status = 200, description = "The calendar with the imported holidays", body = SlaCalendar),
        (status = 404, description = "No such calendar", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sla/calendars/{id}/holidays")]
pub async fn import_holidays(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: String,
) -> Result<web::Json<SlaCalendar>, ApiError> {
    auth.require(Permission::SlaAdmin)?;
    let id = parse_id(&id, "calendar")?;
    let imported = holidays_from_ics(&body).map_err(|e| ApiError::from_domain(&e))?;
    let mut spec = state.store.get_calendar(id).await?.spec;
    for h in imported {
        if !spec.holidays.contains(&h) {
            spec.holidays.push(h);
        }
    }
    Ok(web::Json(calendar(
        state.store.update_calendar(id, None, Some(spec)).await?,
    )))
}

/// List SLA policies
///
/// In the order they are tried: the first active policy whose conditions
/// match a record sets its targets. Agents and admins.
#[utoipa::path(tag = "sla", responses((status = 200, description = "Policies", body = Page<SlaPolicy>)))]
#[get("/sla/policies")]
pub async fn list_policies(
    state: web::Data<AppState>,
    auth: Auth,
) -> Result<web::Json<Page<SlaPolicy>>, ApiError> {
    auth.require(Permission::SlaRead)?;
    let items = state.store.list_policies().await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(Into::into).collect(),
    )))
}

/// Create an SLA policy
///
/// Admins only. Conditions (priorities, groups, categories), targets
/// (first response, resolution, next update; each 24×7 or in a calendar),
/// the states that pause the clock, warning percentages and escalations.
/// Only groups in the conditions make it an OLA for those groups.
#[utoipa::path(
    tag = "sla",
    request_body = NewSlaPolicy,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created", body = SlaPolicy),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sla/policies")]
pub async fn create_policy(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<NewSlaPolicy>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::SlaAdmin)?;
    let b = body.into_inner();
    let n = name(b.name.as_deref().unwrap_or(""))?;
    let spec = b.definition.ok_or_else(|| {
        ApiError::unprocessable(
            "sla.definition_required",
            "definition",
            "give the policy a definition with targets",
        )
    })?;
    let p = state
        .store
        .create_policy(
            &n,
            b.position.unwrap_or(100),
            b.active.unwrap_or(true),
            spec,
        )
        .await?;
    Ok(HttpResponse::Created().json(SlaPolicy::from(p)))
}

/// Get an SLA policy
#[utoipa::path(
    tag = "sla",
    params(("id" = Uuid, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The policy", body = SlaPolicy),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sla/policies/{id}")]
pub async fn get_policy(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<SlaPolicy>, ApiError> {
    auth.require(Permission::SlaRead)?;
    Ok(web::Json(
        state
            .store
            .get_policy(parse_id(&id, "policy")?)
            .await?
            .into(),
    ))
}

/// Update an SLA policy
///
/// Admins only. Records pick up the change at their next change; a new
/// target length keeps the time already elapsed and the pause history.
#[utoipa::path(
    tag = "sla",
    params(("id" = Uuid, Path, description = "Policy id")),
    request_body = SlaPolicyUpdate,
    responses(
        (status = 200, description = "Updated", body = SlaPolicy),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/sla/policies/{id}")]
pub async fn update_policy(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<SlaPolicyUpdate>,
) -> Result<web::Json<SlaPolicy>, ApiError> {
    auth.require(Permission::SlaAdmin)?;
    let id = parse_id(&id, "policy")?;
    let b = body.into_inner();
    let n = b.name.as_deref().map(name).transpose()?;
    Ok(web::Json(
        state
            .store
            .update_policy(id, n.as_deref(), b.position, b.active, b.definition)
            .await?
            .into(),
    ))
}

/// Delete an SLA policy
///
/// Admins only. Timers it started keep their targets.
#[utoipa::path(
    tag = "sla",
    params(("id" = Uuid, Path, description = "Policy id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/sla/policies/{id}")]
pub async fn delete_policy(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::SlaAdmin)?;
    state.store.delete_policy(parse_id(&id, "policy")?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// SLA report parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Incidents created at or after (RFC 3339).
    pub from: chrono::DateTime<chrono::Utc>,
    /// Incidents created before (RFC 3339).
    pub to: chrono::DateTime<chrono::Utc>,
    /// Count only this kind of target.
    pub kind: Option<keel_sla::TargetKind>,
}

/// SLA compliance report
///
/// For the incidents created in `[from, to)`: how many SLA targets were met,
/// breached (running ones past due included) or are still running, and the
/// compliance percentage, overall and by policy, assignment group and
/// priority. Agents and admins.
#[utoipa::path(
    tag = "sla",
    params(ReportParams),
    responses((status = 200, description = "The report", body = crate::dto::SlaReport))
)]
#[get("/reports/sla")]
pub async fn sla_report(
    state: web::Data<AppState>,
    auth: Auth,
    q: web::Query<ReportParams>,
) -> Result<web::Json<crate::dto::SlaReport>, ApiError> {
    auth.require(Permission::SlaRead)?;
    auth.require(Permission::IncidentReadAll)?;
    let q = q.into_inner();
    if q.from >= q.to {
        return Err(ApiError::from(keel_core::query::QueryError::InvalidFilter(
            "to",
            "must be after `from`".into(),
        )));
    }
    let r = state.store.sla_report(q.from, q.to, q.kind).await?;
    use crate::dto::{GroupCompliance, PolicyCompliance, PolicySummary, PriorityCompliance};
    Ok(web::Json(crate::dto::SlaReport {
        from: q.from,
        to: q.to,
        kind: q.kind,
        overall: r.overall.into(),
        by_policy: r
            .by_policy
            .into_iter()
            .map(|(p, c)| PolicyCompliance {
                policy: p.map(|(id, name)| PolicySummary { id, name }),
                compliance: c.into(),
            })
            .collect(),
        by_group: r
            .by_group
            .into_iter()
            .map(|(g, c)| GroupCompliance {
                group: g.map(Into::into),
                compliance: c.into(),
            })
            .collect(),
        by_priority: r
            .by_priority
            .into_iter()
            .map(|(p, c)| PriorityCompliance {
                priority: p,
                compliance: c.into(),
            })
            .collect(),
    }))
}
