//! The web console in a real browser, end to end: the `control-plane` binary (serving the
//! embedded console bundle) on a fresh Postgres database, a separate `data-plane` node, Redis
//! between them under a fresh key prefix — then `npm run e2e` in `web/`, which drives Debian's
//! headless Chromium through playwright-core (`web/e2e/*.spec.ts`: the customer journey, every
//! page at 1280 and 390 px with an axe check, screenshots into `web/e2e/artifacts/`).
//!
//! Needs Node.js ≥ 20.19 with `web/node_modules` (`npm ci` in `web/`; run here when missing) and
//! Chromium at `/usr/bin/chromium` (`apt-get install chromium`; override with `CHROMIUM_PATH`).
//! `.ci/run` installs both. Set `SWITCHYARD_SKIP_BROWSER_TESTS=1` to skip this test on a machine
//! without them (it then passes with a message saying it did not run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use testkit::e2e::Deployment;
use testkit::proc::{ChildGuard, command, control_plane_binary};

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

async fn run(cmd: &mut tokio::process::Command, what: &str, limit: Duration) {
    let status = tokio::time::timeout(limit, cmd.status())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (is Node.js installed?)"));
    assert!(
        status.success(),
        "{what} failed ({status}); its output is above"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    if std::env::var_os("SWITCHYARD_SKIP_BROWSER_TESTS").is_some() {
        eprintln!("SWITCHYARD_SKIP_BROWSER_TESTS is set: the browser tests did NOT run");
        return;
    }
    assert!(
        chromium().is_file(),
        "Chromium is not installed at {} (apt-get install chromium, or set CHROMIUM_PATH; \
         SWITCHYARD_SKIP_BROWSER_TESTS=1 skips this test)",
        chromium().display()
    );
    let web = web_dir();
    if !web.join("node_modules/.package-lock.json").is_file() {
        run(
            tokio::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&web),
            "npm ci",
            Duration::from_secs(600),
        )
        .await;
    }

    let deployment = Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");
    // The gateway first (it only needs Redis), so the console can be told its public URL. The
    // playground calls it from the browser, cross-origin: bearer keys, no cookies, so any
    // origin may (as OpenAI's API allows).
    let dp = deployment
        .start_data_plane_with(
            "dp-console",
            // The `listening on` line the launcher waits for is logged at info.
            "info",
            &[("SWITCHYARD_GATEWAY_CORS_ORIGINS", "*")],
        )
        .await
        .expect("data plane starts");
    let mut cmd = command(&control_plane_binary());
    cmd.envs(deployment.control_plane_env())
        .env("RUST_LOG", "info")
        .env("SWITCHYARD_PUBLIC_GATEWAY_URL", dp.base_url())
        // Every spec signs up fresh users from 127.0.0.1.
        .env("SWITCHYARD_SIGNUPS_PER_IP_PER_HOUR", "1000");
    let cp = ChildGuard::spawn("control-plane", cmd)
        .await
        .expect("control plane starts");
    cp.wait_healthy("/healthz", Duration::from_secs(30))
        .await
        .expect("control plane healthy");

    let mut e2e = tokio::process::Command::new("npm");
    e2e.args(["run", "e2e"])
        .current_dir(&web)
        .env("SWITCHYARD_E2E_CONSOLE_URL", cp.base_url())
        .env("SWITCHYARD_E2E_GATEWAY_URL", dp.base_url())
        .env("CHROMIUM_PATH", chromium())
        .env("CI", "true")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    run(
        &mut e2e,
        "the browser tests (npm run e2e)",
        Duration::from_secs(900),
    )
    .await;

    drop(cp);
    drop(dp);
    deployment.cleanup().await;
}
