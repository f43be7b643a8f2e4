//! `POST /servers/{id}/action`: one action a request, named by the body's only key; 202
//! with an empty body, except the console log (200).
//!
//! # Which states allow which action (Nova's `check_instance_state`)
//! | action | `vm_state` | `task_state` | writes |
//! |---|---|---|---|
//! | `os-stop` | active, error | none | want stopped, task `powering-off` |
//! | `os-start` | stopped | none | want active, task `powering-on` |
//! | `reboot` SOFT | active | none | status `REBOOT`, task `reboot_started` |
//! | `reboot` HARD | active, stopped, paused, suspended, error | none, a soft reboot, pausing, unpausing, suspending, resuming | status `HARD_REBOOT`, task `reboot_started_hard`, want active |
//! | `pause` | active | none | want paused, task `pausing` |
//! | `unpause` | paused | none | want active, task `unpausing` |
//! | `suspend` | active | none | want suspended, task `suspending` |
//! | `resume` | suspended | none | want active, task `resuming` |
//!
//! Anything else is 409 "Cannot 'stop' instance X while it is in vm_state Y" (or
//! `task_state`), as Nova words it. A reboot raises `reboot_seq` (the agent reboots until
//! its `reboot_done` catches up) and sets `reboot_hard`. Every action also needs the
//! server placed (else 409 "Instance X is not ready") and its host's agent heard from
//! (else 409 "Compute service of H is unavailable at this time."): nothing would act on
//! the request otherwise, and the task state would never clear.
//!
//! `os-getConsoleOutput` asks the agent for the serial log (`GET
//! {host.http}/console/{id}?length=N`); `os-resetState` (admins) sets `active` or `error`
//! and clears the task, for a server stuck by a host that died.

use axum::http::StatusCode;
use serde_json::{json, Value};
use stratus_client::compute::{Host, Server, Want};

use super::params;
use super::{bad, conflict, forbidden, NovaResult, Req};
use crate::openstack::{empty, json_response};

/// An action a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Stop,
    Start,
    Reboot {
        hard: bool,
    },
    Pause,
    Unpause,
    Suspend,
    Resume,
    /// The last `length` lines of the console log (`None`: all).
    ConsoleOutput {
        length: Option<u64>,
    },
    /// `os-resetState` to `active` (true) or `error`.
    ResetState {
        active: bool,
    },
}

/// Task states a hard reboot may interrupt (Nova's list, in Stratus's task names).
const HARD_REBOOT_OVER: &[&str] = &[
    "rebooting",
    "reboot_pending",
    "reboot_started",
    "rebooting_hard",
    "resuming",
    "unpausing",
    "suspending",
    "pausing",
];

/// Reads the action of a body `{"name": args}`.
pub fn parse(body: &Value) -> NovaResult<Action> {
    let Some((name, args)) = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    else {
        return Err(bad("Malformed request body: expecting exactly one action."));
    };
    Ok(match name.as_str() {
        "os-stop" => Action::Stop,
        "os-start" => Action::Start,
        "pause" => Action::Pause,
        "unpause" => Action::Unpause,
        "suspend" => Action::Suspend,
        "resume" => Action::Resume,
        "reboot" => {
            let kind = args.get("type").and_then(Value::as_str);
            match kind.map(str::to_ascii_uppercase).as_deref() {
                Some("SOFT") => Action::Reboot { hard: false },
                Some("HARD") => Action::Reboot { hard: true },
                _ => {
                    return Err(bad(format!(
                    "Invalid input for field/attribute type. Value: {}. It must be SOFT or HARD.",
                    args.get("type").unwrap_or(&Value::Null)
                )))
                }
            }
        }
        "os-getConsoleOutput" => {
            let length = match args.get("length") {
                None | Some(Value::Null) => None,
                Some(v) => match params::int("length", v, -1, i64::MAX)? {
                    -1 => None,
                    n => Some(n as u64),
                },
            };
            Action::ConsoleOutput { length }
        }
        "os-resetState" => match args.get("state").and_then(Value::as_str) {
            Some("active") => Action::ResetState { active: true },
            Some("error") => Action::ResetState { active: false },
            _ => {
                return Err(bad(
                    "Invalid input for field/attribute state. It must be active or error.",
                ))
            }
        },
        other => return Err(bad(format!("There is no such action: {other}"))),
    })
}

/// Nova's 409 for a state that does not allow `method`.
fn invalid_state(s: &Server, method: &str, attr: &str, state: &str) -> super::NovaError {
    conflict(format!(
        "Cannot '{method}' instance {} while it is in {attr} {state}",
        s.id
    ))
}

/// Checks that `s` is in one of `vm_states` with a task state `tasks` allows (`None`
/// always allowed).
fn check(s: &Server, method: &str, vm_states: &[&str], tasks: &[&str]) -> NovaResult<()> {
    if !vm_states.contains(&s.vm_state.as_str()) {
        return Err(invalid_state(s, method, "vm_state", &s.vm_state));
    }
    if let Some(t) = &s.task_state {
        if !tasks.contains(&t.as_str()) {
            return Err(invalid_state(s, method, "task_state", t));
        }
    }
    Ok(())
}

/// Applies a state-changing action to `s` (as read inside the compare-and-swap), or 409.
pub fn apply(s: &mut Server, a: &Action) -> NovaResult<()> {
    let (method, vm_states, tasks, want, task): (&str, &[&str], &[&str], Want, &str) = match a {
        Action::Stop => (
            "stop",
            &["active", "error"],
            &[],
            Want::Stopped,
            "powering-off",
        ),
        Action::Start => ("start", &["stopped"], &[], Want::Active, "powering-on"),
        Action::Reboot { hard: false } => {
            ("reboot", &["active"], &[], Want::Active, "reboot_started")
        }
        Action::Reboot { hard: true } => (
            "reboot",
            &["active", "stopped", "paused", "suspended", "error"],
            HARD_REBOOT_OVER,
            Want::Active,
            "reboot_started_hard",
        ),
        Action::Pause => ("pause", &["active"], &[], Want::Paused, "pausing"),
        Action::Unpause => ("unpause", &["paused"], &[], Want::Active, "unpausing"),
        Action::Suspend => ("suspend", &["active"], &[], Want::Suspended, "suspending"),
        Action::Resume => ("resume", &["suspended"], &[], Want::Active, "resuming"),
        Action::ResetState { active } => {
            if *active {
                s.status = "ACTIVE".into();
                s.vm_state = "active".into();
            } else {
                s.status = "ERROR".into();
                s.vm_state = "error".into();
            }
            s.task_state = None;
            return Ok(());
        }
        Action::ConsoleOutput { .. } => return Ok(()),
    };
    check(s, method, vm_states, tasks)?;
    if s.want == Want::Deleted {
        return Err(invalid_state(s, method, "task_state", "deleting"));
    }
    if s.host.is_none() {
        return Err(conflict(format!("Instance {} is not ready", s.id)));
    }
    s.want = want;
    s.task_state = Some(task.into());
    if let Action::Reboot { hard } = a {
        s.reboot_seq += 1;
        s.reboot_hard = *hard;
        s.status = if *hard { "HARD_REBOOT" } else { "REBOOT" }.into();
    }
    Ok(())
}

/// The host of `s` if its agent is alive: 409 otherwise (Nova's answers).
pub(super) async fn live_host(r: &Req<'_>, s: &Server) -> NovaResult<Host> {
    let name = s
        .host
        .clone()
        .ok_or_else(|| conflict(format!("Instance {} is not ready", s.id)))?;
    match r.compute().hosts.get(&name).await? {
        Some((h, _)) if h.up(stratus_client::compute::now_us()) => Ok(h),
        _ => Err(conflict(format!(
            "Compute service of {name} is unavailable at this time."
        ))),
    }
}

/// `POST /servers/{id}/action`.
pub(super) async fn route(r: &Req<'_>, id: &str) -> NovaResult {
    let action = parse(&r.json()?)?;
    let (s, _) = r.server(id).await?;
    match &action {
        Action::ConsoleOutput { length } => {
            r.may_change("os_compute_api:os-console-output")?;
            return console_output(r, &s, *length).await;
        }
        Action::ResetState { .. } => {
            if !r.is_admin() {
                return Err(forbidden("os_compute_api:os-admin-actions:reset_state"));
            }
        }
        _ => {
            r.may_change("os_compute_api:servers:action")?;
            // The state check first (a building server is 409 for its state), then the
            // host's agent.
            apply(&mut s.clone(), &action)?;
            live_host(r, &s).await?;
        }
    }
    let after = r.change_server(id, |s| apply(s, &action)).await?;
    tracing::info!(server = id, action = ?action, task = ?after.task_state, "server action");
    Ok(empty(StatusCode::ACCEPTED))
}

/// Removes what Nova strips from console output (control characters but tab, newline and
/// carriage return).
pub fn clean_console(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// `os-getConsoleOutput`: the last `length` lines of the serial log, from the agent.
async fn console_output(r: &Req<'_>, s: &Server, length: Option<u64>) -> NovaResult {
    let host = live_host(r, s).await?;
    let mut url = format!("{}/console/{}", host.http.trim_end_matches('/'), s.id);
    if let Some(n) = length {
        url.push_str(&format!("?length={n}"));
    }
    let unreadable = |why: String| {
        conflict(format!(
            "The console log of instance {} could not be read from its host {}: {why}",
            s.id, host.name
        ))
    };
    let resp = r
        .nova()
        .http
        .get(&url)
        .send()
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    let output = match resp.status().as_u16() {
        200 => resp.text().await.map_err(|e| unreadable(e.to_string()))?,
        // No log yet (the guest never started): an empty one, as Nova shows it.
        404 => String::new(),
        code => return Err(unreadable(format!("the agent answered {code}"))),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"output": clean_console(&output)}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::render::test_server;

    /// A settled server in `vm_state` (placed, no task).
    fn server_in(vm_state: &str) -> Server {
        let mut s = test_server();
        s.vm_state = vm_state.into();
        s.status = match vm_state {
            "active" => "ACTIVE",
            "stopped" => "SHUTOFF",
            "paused" => "PAUSED",
            "suspended" => "SUSPENDED",
            "error" => "ERROR",
            _ => "BUILD",
        }
        .into();
        s.task_state = None;
        s.host = Some("h1".into());
        s
    }

    fn act(name: &str, args: Value) -> Action {
        parse(&json!({ name: args })).unwrap()
    }

    #[test]
    fn bodies_parse_as_openstack_sends_them() {
        assert_eq!(act("os-stop", Value::Null), Action::Stop);
        assert_eq!(act("os-start", Value::Null), Action::Start);
        assert_eq!(
            act("reboot", json!({"type": "SOFT"})),
            Action::Reboot { hard: false }
        );
        assert_eq!(
            act("reboot", json!({"type": "HARD"})),
            Action::Reboot { hard: true }
        );
        assert_eq!(act("pause", Value::Null), Action::Pause);
        assert_eq!(
            act("os-getConsoleOutput", json!({})),
            Action::ConsoleOutput { length: None }
        );
        assert_eq!(
            act("os-getConsoleOutput", json!({"length": 10})),
            Action::ConsoleOutput { length: Some(10) }
        );
        assert_eq!(
            act("os-getConsoleOutput", json!({"length": "-1"})),
            Action::ConsoleOutput { length: None }
        );
        let status = |b: Value| parse(&b).unwrap_err().status.as_u16();
        assert_eq!(status(json!({"os-getConsoleOutput": {"length": -2}})), 400);
        assert_eq!(status(json!({"reboot": {"type": "GENTLE"}})), 400);
        assert_eq!(status(json!({"reboot": {}})), 400);
        assert_eq!(status(json!({"explode": null})), 400);
        assert_eq!(status(json!({"os-stop": null, "os-start": null})), 400);
        assert_eq!(status(json!([])), 400);
        assert_eq!(status(json!({"os-resetState": {"state": "deleted"}})), 400);
    }

    #[test]
    fn which_states_allow_which_action() {
        use Action::*;
        let all = [
            "active",
            "stopped",
            "paused",
            "suspended",
            "error",
            "building",
        ];
        let table: &[(Action, &[&str])] = &[
            (Stop, &["active", "error"]),
            (Start, &["stopped"]),
            (Reboot { hard: false }, &["active"]),
            (
                Reboot { hard: true },
                &["active", "stopped", "paused", "suspended", "error"],
            ),
            (Pause, &["active"]),
            (Unpause, &["paused"]),
            (Suspend, &["active"]),
            (Resume, &["suspended"]),
        ];
        for (a, ok) in table {
            for st in all {
                let mut s = server_in(st);
                let r = apply(&mut s, a);
                if ok.contains(&st) {
                    assert!(r.is_ok(), "{a:?} in {st}: {:?}", r.err());
                    assert!(s.task_state.is_some());
                } else {
                    let e = r.unwrap_err();
                    assert_eq!(e.status, 409, "{a:?} in {st}");
                    assert!(
                        e.message.contains(&format!("while it is in vm_state {st}")),
                        "{}",
                        e.message
                    );
                }
            }
        }
    }

    #[test]
    fn actions_write_what_the_agent_reads() {
        let mut s = server_in("active");
        apply(&mut s, &Action::Stop).unwrap();
        assert_eq!(
            (s.want, s.task_state.as_deref()),
            (Want::Stopped, Some("powering-off"))
        );
        let e = apply(&mut s, &Action::Stop).unwrap_err();
        assert_eq!(e.status, 409);
        assert_eq!(
            e.message,
            format!(
                "Cannot 'stop' instance {} while it is in task_state powering-off",
                s.id
            )
        );

        let mut s = server_in("active");
        apply(&mut s, &Action::Reboot { hard: false }).unwrap();
        assert_eq!((s.reboot_seq, s.reboot_hard), (1, false));
        assert_eq!(s.status, "REBOOT");
        assert_eq!(s.task_state.as_deref(), Some("reboot_started"));
        // A soft reboot does not stack, a hard one may interrupt it.
        assert_eq!(
            apply(&mut s, &Action::Reboot { hard: false })
                .unwrap_err()
                .status,
            409
        );
        apply(&mut s, &Action::Reboot { hard: true }).unwrap();
        assert_eq!((s.reboot_seq, s.reboot_hard), (2, true));
        assert_eq!(s.status, "HARD_REBOOT");
        assert_eq!(s.task_state.as_deref(), Some("reboot_started_hard"));
        assert_eq!(
            apply(&mut s, &Action::Reboot { hard: true })
                .unwrap_err()
                .status,
            409
        );

        // A hard reboot of a paused server brings it back to active.
        let mut s = server_in("paused");
        s.want = Want::Paused;
        apply(&mut s, &Action::Reboot { hard: true }).unwrap();
        assert_eq!(s.want, Want::Active);

        for (st, a, want, task) in [
            ("stopped", Action::Start, Want::Active, "powering-on"),
            ("active", Action::Pause, Want::Paused, "pausing"),
            ("paused", Action::Unpause, Want::Active, "unpausing"),
            ("active", Action::Suspend, Want::Suspended, "suspending"),
            ("suspended", Action::Resume, Want::Active, "resuming"),
        ] {
            let mut s = server_in(st);
            apply(&mut s, &a).unwrap();
            assert_eq!(
                (s.want, s.task_state.as_deref()),
                (want, Some(task)),
                "{a:?}"
            );
        }
    }

    #[test]
    fn unplaced_or_deleting_servers_take_no_action() {
        // An ERROR before placement: nothing to stop.
        let mut s = server_in("error");
        s.host = None;
        let e = apply(&mut s, &Action::Stop).unwrap_err();
        assert_eq!(e.status, 409);
        assert!(e.message.ends_with("is not ready"), "{}", e.message);
        let mut s = server_in("active");
        s.want = Want::Deleted;
        s.task_state = Some("deleting".into());
        assert_eq!(apply(&mut s, &Action::Pause).unwrap_err().status, 409);
        // A reset clears a stuck task.
        let mut s = server_in("active");
        s.task_state = Some("powering-off".into());
        apply(&mut s, &Action::ResetState { active: false }).unwrap();
        assert_eq!(
            (s.status.as_str(), s.task_state.as_deref()),
            ("ERROR", None)
        );
    }

    #[test]
    fn console_output_loses_control_characters() {
        assert_eq!(clean_console("a\u{1b}[0mb\tc\r\nd\u{0}"), "a[0mb\tc\r\nd");
    }
}
