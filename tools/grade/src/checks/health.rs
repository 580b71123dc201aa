//! Stage 6: an origin that dies leaves the rotation and comes back when it returns; a broken
//! config is refused with its file and line.

use std::time::{Duration, Instant};

use super::{Check, Checked, Ctx, Failure};
use crate::http;
use crate::setup::Setup;

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "origin_leaves_and_returns",
            stage: 6,
            points: 2,
            teaches: "chapters/06-health-checks.md#watch-a-backend-die",
            what: "with one of three origins killed every request is still answered 200, and the origin gets requests again once it is back",
            run: origin_leaves_and_returns,
        },
        Check {
            name: "broken_config_refused",
            stage: 6,
            points: 1,
            teaches: "chapters/06-health-checks.md#the-configuration-file",
            what: "a config with a mistake on line 4 is refused: a non-zero exit, and stderr names the file and the line",
            run: broken_config_refused,
        },
    ]
}

fn origin_leaves_and_returns(ctx: &mut Ctx) -> Checked {
    if ctx.backends.len() < 3 {
        return Err(Failure::Skip("needs three origins".into()));
    }
    ctx.origins.stop(2);
    let mut failure = None;
    for i in 0..30 {
        let (_, target) = ctx.target("");
        match http::exchange(ctx.proxy, &http::get_close(&target)) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                failure = Some(format!(
                    "request {} of 30 with origin 2 killed got {}",
                    i + 1,
                    r.status
                ));
                break;
            }
            Err(e) => {
                failure = Some(format!("request {} of 30 with origin 2 killed: {e}", i + 1));
                break;
            }
        }
    }
    ctx.origins.restart(2)?;
    if let Some(why) = failure {
        return Err(Failure::Fail(why));
    }
    // Back: requests reach it again once the health checks have seen it (rise), within 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let (token, target) = ctx.target("");
        if let Ok(r) = http::exchange(ctx.proxy, &http::get_close(&target)) {
            if r.status == 200 && ctx.records(&token, 1).iter().any(|r| r.origin == 2) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Failure::Fail(
        "origin 2 came back, but no request reached it within 15 s".into(),
    ))
}

const BROKEN: &str = "# grade: a config with a mistake on line 4\n[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = \"many\"\n\n[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n";

fn broken_config_refused(ctx: &mut Ctx) -> Checked {
    let Some(launcher) = ctx.launcher else {
        return Err(Failure::Skip(
            "needs to start the program with a broken config; not possible with --addr".into(),
        ));
    };
    let setup = Setup {
        raw_config: Some(BROKEN.to_string()),
        ..Setup::default()
    };
    let (mut program, path) = launcher.start_raw(&setup)?;
    let Some(status) = program.wait_exit(Duration::from_secs(10)) else {
        program.stop();
        return Err(Failure::Fail(
            "the program kept running with a config whose line 4 is `workers = \"many\"`".into(),
        ));
    };
    if status.success() {
        return Err(Failure::Fail(
            "the program exited with status 0 on a broken config; a refusal is non-zero".into(),
        ));
    }
    let stderr = program.stderr_text();
    let file = std::path::Path::new(&path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let names_line = stderr.contains(&format!("{file}:4")) || stderr.contains("line 4");
    if !stderr.contains(&file) || !names_line {
        return Err(Failure::Fail(format!(
            "the program refused the config, but its stderr does not name the file ({file}) \
             and line 4: {}",
            http::show(stderr.as_bytes())
        )));
    }
    Ok(())
}
