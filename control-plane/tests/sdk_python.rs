//! The official `openai` and `anthropic` Python SDKs, unchanged, against the gateway.
//!
//! What it does, in order:
//! 1. Creates (or reuses) a virtualenv with the pinned SDKs of `tests/sdk/requirements.txt`
//!    (`python3 -m venv`, `pip install -r`). It lives in `$CARGO_TARGET_DIR/sdk-venv-<hash>`
//!    (or the target directory the test executable runs from), keyed by a hash of the
//!    requirements and the Python version, so it is built once and rebuilt when a pin changes.
//!    A venv is built under a temporary name and renamed when complete, so an interrupted
//!    install is never reused. Python and the package index are REQUIRED: when `python3`, `venv`
//!    or `pip` is missing or the index is unreachable, the test fails saying so (it never skips
//!    silently). `SWITCHYARD_TEST_PYTHON` points at another interpreter; `PIP_INDEX_URL` and
//!    friends are honoured by pip as usual.
//! 2. Starts the `control-plane` binary in zero-setup mode (SQLite in a temp dir, the data plane
//!    embedded, one port) and the testkit fakes in this process.
//! 3. Provisions one tenant through the control API: the mock provider, an `openai_compatible`
//!    and an `azure_openai` provider on `FakeOpenAi`, an `anthropic` provider on `FakeAnthropic`,
//!    a `gemini` provider on `FakeGemini` and a `bedrock` provider on `FakeBedrock`, with
//!    deployments for text, tool calls, a cut stream and embeddings, a route whose primary
//!    answers 500 (failing over to Anthropic), and a key; plus a key under an exhausted budget
//!    and one with `rpm_limit` 1 (`tests/sdk/test_governance_sdk.py`: refusals as the SDKs meet
//!    them; afterwards the over-budget key must show exactly one metered request per SDK, i.e.
//!    neither SDK retried the refusal).
//! 4. Runs `python -m pytest -q control-plane/tests/sdk` with the `SY_*` variables documented in
//!    `tests/sdk/sy_env.py` and fails, with pytest's output, unless every test passed (a skipped
//!    test counts as a failure: nothing in the suite is optional).
//!
//! Needs the workspace binaries built (`cargo build --workspace --bins`; `cargo test --workspace`
//! builds them), see testkit::proc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::api::{ControlApi, PASSWORD, id_of};
use testkit::e2e::{chat, http_client, poll_until};
use testkit::fake_anthropic::FakeAnthropic;
use testkit::fake_bedrock::{self, FakeBedrock};
use testkit::fake_gemini::FakeGemini;
use testkit::fake_openai::FakeOpenAi;
use testkit::proc::{ChildGuard, command, control_plane_binary};

/// Creating the venv and installing the SDKs (first run only; downloads a few MB).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The whole pytest run; the suite itself takes about ten seconds.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(180);

const OPENAI_KEY: &str = "sk-upstream-openai-0123456789";
const ANTHROPIC_KEY: &str = "sk-ant-upstream-0123456789";
const GEMINI_KEY: &str = "gemini-upstream-key-0123456789";

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the control-plane crate sits in the workspace root")
        .to_path_buf()
}

/// Where venvs are kept: `$CARGO_TARGET_DIR` when it is an absolute path, else the target
/// directory of this test executable (`<target>/<profile>/deps/sdk_python-…`).
fn venv_parent() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Runs `cmd` to completion within `timeout`; returns (success, stdout + stderr).
async fn run(
    what: &str,
    mut cmd: tokio::process::Command,
    timeout: Duration,
) -> Result<(bool, String), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("{what}: did not finish within {timeout:?}"))?
        .map_err(|e| format!("{what}: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// The virtualenv with the pinned SDKs, created on first use. Fails the test with a clear
/// message when Python, venv, pip or the package index is not available.
async fn sdk_venv() -> PathBuf {
    let python = std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut version = tokio::process::Command::new(&python);
    version.arg("--version");
    let (ok, version) = run(
        &format!("`{python} --version`"),
        version,
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "The SDK suite needs Python 3 with venv and pip (CI has them): {e}. Install \
                 python3 (and python3-venv on Debian/Ubuntu), or point SWITCHYARD_TEST_PYTHON at \
                 an interpreter."
        )
    });
    assert!(ok, "`{python} --version` failed: {version}");

    let requirements_path = sdk_dir().join("requirements.txt");
    let requirements = std::fs::read(&requirements_path).expect("tests/sdk/requirements.txt");
    let mut hasher = Sha256::new();
    hasher.update(&requirements);
    hasher.update(version.trim().as_bytes());
    let hash = hex::encode(hasher.finalize());
    let parent = venv_parent();
    let venv = parent.join(format!("sdk-venv-{}", &hash[..16]));
    let marker = venv.join(".switchyard-complete");
    if marker.is_file() && venv_python(&venv).exists() {
        return venv;
    }

    std::fs::create_dir_all(&parent).expect("create the venv parent directory");
    let building = parent.join(format!(
        "sdk-venv-{}.building-{}",
        &hash[..16],
        uuid::Uuid::new_v4().simple()
    ));
    let mut create = tokio::process::Command::new(&python);
    create.arg("-m").arg("venv").arg(&building);
    match run("python3 -m venv", create, INSTALL_TIMEOUT).await {
        Ok((true, _)) => {}
        Ok((false, out)) | Err(out) => {
            let _ = std::fs::remove_dir_all(&building);
            panic!(
                "The SDK suite could not create a virtualenv with `{python} -m venv` (on \
                 Debian/Ubuntu install python3-venv):\n{out}"
            );
        }
    }
    let mut pip = tokio::process::Command::new(venv_python(&building));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        "-r",
    ])
    .arg(&requirements_path);
    match run("pip install", pip, INSTALL_TIMEOUT).await {
        Ok((true, _)) => {}
        Ok((false, out)) | Err(out) => {
            let _ = std::fs::remove_dir_all(&building);
            panic!(
                "The SDK suite could not install its pinned SDKs ({}) with pip. The package \
                 index must be reachable (pip honours PIP_INDEX_URL for a mirror):\n{out}",
                requirements_path.display()
            );
        }
    }
    std::fs::write(building.join(".switchyard-complete"), &requirements).expect("write marker");
    // Publish atomically. A concurrent run may have published the same venv first: use theirs.
    // A leftover without the marker is an interrupted build of an older run: replace it.
    if venv.exists() && !marker.is_file() {
        let _ = std::fs::remove_dir_all(&venv);
    }
    if std::fs::rename(&building, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&building);
        assert!(
            marker.is_file(),
            "could not move the new venv to {}",
            venv.display()
        );
    }
    venv
}

/// The model names the suite is given, provisioned against the fakes.
struct Models {
    /// `SY_CHAT_MODELS`: one deployment per upstream provider answering the default text; each
    /// has a `<name>-tool` sibling.
    chat: Vec<&'static str>,
    /// `SY_EMBED_MODELS`: `name=N` (N tokens per input reported) or `name` (estimated).
    embed: Vec<&'static str>,
}

/// Creates a provider through the control API; returns its id.
async fn provider(api: &ControlApi, body: Value) -> String {
    let created = api
        .create_provider(&body)
        .await
        .unwrap_or_else(|e| panic!("create provider {body}: {e}"));
    id_of(&created).unwrap()
}

async fn model(api: &ControlApi, name: &str, provider_id: &str, upstream: &str) {
    api.create_model(&json!({
        "name": name,
        "provider_id": provider_id,
        "upstream_model": upstream,
        "input_price_per_mtok": 1.0,
        "output_price_per_mtok": 2.0,
    }))
    .await
    .unwrap_or_else(|e| panic!("create model {name}: {e}"));
}

/// A text deployment `name` and its `name-tool` sibling on one provider.
async fn chat_pair(api: &ControlApi, name: &'static str, provider_id: &str, upstream: &str) {
    model(api, name, provider_id, upstream).await;
    model(api, &format!("{name}-tool"), provider_id, "fake-tool").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_against_the_gateway() {
    // First, so a missing Python fails before anything else starts.
    let venv = sdk_venv().await;

    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&control_plane_binary());
    cmd.env("SWITCHYARD_DATA_DIR", data_dir.path())
        .env("RUST_LOG", "info");
    let cp = ChildGuard::spawn("control-plane", cmd)
        .await
        .expect("the control plane starts in zero-setup mode");
    cp.wait_healthy("/healthz", Duration::from_secs(30))
        .await
        .expect("healthy");
    let origin = cp.base_url();

    // Each fake insists on its key, so the sealed provider keys are proven to reach it.
    let openai = FakeOpenAi::start_with_key(OPENAI_KEY)
        .await
        .expect("fake OpenAI upstream");
    let anthropic = FakeAnthropic::start_with_key(ANTHROPIC_KEY)
        .await
        .expect("fake Anthropic upstream");
    let gemini = FakeGemini::start_with_key(GEMINI_KEY)
        .await
        .expect("fake Gemini upstream");
    let bedrock = FakeBedrock::start().await.expect("fake Bedrock upstream");

    let mut api = ControlApi::new(&origin).unwrap();
    let org = format!("sdk-{}", uuid::Uuid::new_v4().simple());
    api.signup(&format!("{org}@example.com"), PASSWORD, &org)
        .await
        .expect("signup");

    let mock = provider(&api, json!({"name": "mock", "kind": "mock"})).await;
    model(&api, "echo", &mock, "mock-echo").await;

    let fam = provider(
        &api,
        json!({
            "name": "fake-openai",
            "kind": "openai_compatible",
            "base_url": openai.base_url(),
            "api_key": OPENAI_KEY,
        }),
    )
    .await;
    chat_pair(&api, "gpt-fake", &fam, "gpt-4o-mini").await;
    model(&api, "gpt-fake-cut", &fam, "fake-cut-stream").await;
    model(&api, "embed-openai", &fam, "text-embedding-3-small").await;

    // The same fake serves Azure OpenAI's deployment routes (key in `api-key`).
    let azure = provider(
        &api,
        json!({
            "name": "fake-azure",
            "kind": "azure_openai",
            "base_url": openai.azure_endpoint(),
            "api_key": OPENAI_KEY,
            "api_version": "2024-10-21",
        }),
    )
    .await;
    chat_pair(&api, "azure-fake", &azure, "gpt-4o-mini").await;
    model(&api, "embed-azure", &azure, "text-embedding-3-small").await;

    let claude = provider(
        &api,
        json!({
            "name": "fake-anthropic",
            "kind": "anthropic",
            "base_url": anthropic.base_url(),
            "api_key": ANTHROPIC_KEY,
        }),
    )
    .await;
    chat_pair(&api, "claude-fake", &claude, "claude-sonnet-4-5").await;

    // A route whose primary (OpenAI-compatible) answers 500 and whose fallback is Anthropic.
    let mut route_ids = Vec::new();
    for (name, provider_id, upstream) in [
        ("support-primary", &fam, "fake-500"),
        ("support-fallback", &claude, "claude-sonnet-4-5"),
    ] {
        let created = api
            .create_model(&json!({
                "name": name,
                "provider_id": provider_id,
                "upstream_model": upstream,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 2.0,
            }))
            .await
            .unwrap_or_else(|e| panic!("create model {name}: {e}"));
        route_ids.push(id_of(&created).unwrap());
    }
    api.create_route(&json!({
        "name": "support",
        "strategy": "priority",
        "candidates": [{"model_id": route_ids[0]}, {"model_id": route_ids[1]}],
    }))
    .await
    .expect("create the route");

    let gem = provider(
        &api,
        json!({
            "name": "fake-gemini",
            "kind": "gemini",
            "base_url": gemini.base_url(),
            "api_key": GEMINI_KEY,
        }),
    )
    .await;
    chat_pair(&api, "gemini-fake", &gem, "gemini-2.5-flash").await;
    model(&api, "embed-gemini", &gem, "text-embedding-004").await;

    let aws = provider(
        &api,
        json!({
            "name": "fake-bedrock",
            "kind": "bedrock",
            "base_url": bedrock.base_url(),
            "region": fake_bedrock::REGION,
            "access_key_id": fake_bedrock::ACCESS_KEY_ID,
            "secret_access_key": fake_bedrock::SECRET_ACCESS_KEY,
        }),
    )
    .await;
    chat_pair(
        &api,
        "bedrock-fake",
        &aws,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
    )
    .await;
    model(&api, "embed-bedrock", &aws, "amazon.titan-embed-text-v2:0").await;

    let models = Models {
        chat: vec![
            "gpt-fake",
            "azure-fake",
            "claude-fake",
            "gemini-fake",
            "bedrock-fake",
        ],
        // `=N`: the provider reports N tokens per input; Gemini reports none (estimated).
        embed: vec![
            "embed-openai=3",
            "embed-azure=3",
            "embed-gemini",
            "embed-bedrock=3",
        ],
    };

    let key = api
        .create_key(&json!({"name": "sdk suite"}))
        .await
        .expect("create key")
        .key;

    // Governance as the SDKs meet it: a key whose own budget no request fits in, and a key
    // allowed one request a minute (see tests/sdk/test_governance_sdk.py).
    let budget_key = api
        .create_key(&json!({"name": "sdk over budget"}))
        .await
        .expect("create key");
    api.expect(
        reqwest::Method::POST,
        "/api/v1/budgets",
        Some(&json!({
            "scope": "key",
            "scope_id": budget_key.id,
            "limit_usd": "0.000001",
            "period": "lifetime",
        })),
        reqwest::StatusCode::CREATED,
    )
    .await
    .expect("a key budget");
    let rpm_key = api
        .create_key(&json!({"name": "sdk rpm", "rpm_limit": 1}))
        .await
        .expect("create key");

    // The key and the tenant config reach the embedded data plane through the in-process bus;
    // wait until a request through the newest deployment works before handing over to Python.
    let client = http_client();
    let probe_model = models.chat.last().copied().unwrap_or("echo");
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let r = chat(
                &client,
                &origin,
                &key,
                &json!({"model": probe_model, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(())
        },
    )
    .await
    .expect("the provisioned key and models work");

    let chat_models = models.chat.join(",");
    let embed_models = models.embed.join(",");
    let pytest = pytest_command(
        &venv,
        &["control-plane/tests/sdk"],
        &[
            ("SY_BASE_URL", &origin),
            ("SY_KEY", &key),
            ("SY_KEY_BUDGET", &budget_key.key),
            ("SY_KEY_RPM", &rpm_key.key),
            ("SY_MODEL_ECHO", "echo"),
            ("SY_MODEL_CHAT", "gpt-fake"),
            ("SY_MODEL_CUT", "gpt-fake-cut"),
            ("SY_ROUTE_FAILOVER", "support"),
            ("SY_CHAT_MODELS", &chat_models),
            ("SY_EMBED_MODELS", &embed_models),
        ],
    );
    let (ok, output) = run("pytest", pytest, PYTEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned();
    // Shown with `--nocapture`: every test by name (`-rA`) and the summary.
    eprintln!("{output}");
    assert!(
        ok,
        "the SDK suite failed ({summary}):\n{output}\n----- gateway log tail -----\n{}",
        tail(&cp.logs_text(), 80)
    );
    assert!(
        !summary.contains("skipped") && summary.contains("passed"),
        "every SDK test must run and pass ({summary}):\n{output}"
    );
    // Each SDK sent one request on the over-budget key and did not retry the refusal, though
    // both had retries on (`x-should-retry: false`).
    let budget_key_id = budget_key.id.clone();
    let metered = poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let (_, usage) = api
                .send(reqwest::Method::GET, "/api/v1/usage?limit=1000", None)
                .await?;
            let n = usage["data"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| r["key_id"].as_str() == Some(budget_key_id.as_str()))
                        .count()
                })
                .unwrap_or(0);
            anyhow::ensure!(n >= 2, "{n} usage rows of the over-budget key");
            Ok(n)
        },
    )
    .await
    .expect("the refused requests are metered");
    assert_eq!(metered, 2, "an SDK retried a budget refusal");
}

/// `python -m pytest <args>` in the workspace root with only the suite's own environment:
/// nothing of the developer's SDK configuration, proxies or `SY_*` leaks in.
fn pytest_command(venv: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut pytest = tokio::process::Command::new(venv_python(venv));
    pytest
        .args(["-m", "pytest", "-q", "-rA"])
        .args(args)
        .current_dir(workspace_root());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let upper = k.to_ascii_uppercase();
        if upper.starts_with("OPENAI_")
            || upper.starts_with("ANTHROPIC_")
            || upper.starts_with("SY_")
            || upper.ends_with("_PROXY")
            || upper == "PYTHONPATH"
        {
            pytest.env_remove(&k);
        }
    }
    pytest
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied());
    pytest
}

/// A distributed deployment under test: a fresh database and Redis prefix (on `redis_url`
/// when given, else the shared local Redis), the control plane and one data-plane node.
async fn distributed(
    node_id: &str,
    redis_url: Option<String>,
) -> (testkit::e2e::Deployment, ChildGuard, ChildGuard) {
    let mut deployment = testkit::e2e::Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");
    if let Some(url) = redis_url {
        deployment.redis_url = url;
    }
    let cp = deployment
        .start_control_plane("info")
        .await
        .expect("control plane");
    let dp = deployment
        .start_data_plane(node_id, "info")
        .await
        .expect("data plane");
    (deployment, cp, dp)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The issue's walk on separate processes: deployments and a route created through the control
/// API of a distributed control plane, called through a `data-plane` process with the official
/// OpenAI SDK; the primary answers 500 and the client gets the fallback's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_fails_over_through_a_data_plane_process() {
    let venv = sdk_venv().await;
    let (deployment, cp, dp) = distributed("dp-sdk", None).await;
    let openai = FakeOpenAi::start_with_key(OPENAI_KEY).await.unwrap();
    let anthropic = FakeAnthropic::start_with_key(ANTHROPIC_KEY).await.unwrap();

    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    api.signup("sdk-route@example.com", PASSWORD, "SDK Route")
        .await
        .expect("signup");
    let fam = provider(
        &api,
        json!({"name": "fake-openai", "kind": "openai_compatible",
               "base_url": openai.base_url(), "api_key": OPENAI_KEY}),
    )
    .await;
    let claude = provider(
        &api,
        json!({"name": "fake-anthropic", "kind": "anthropic",
               "base_url": anthropic.base_url(), "api_key": ANTHROPIC_KEY}),
    )
    .await;
    let mut ids = Vec::new();
    for (name, provider_id, upstream) in [
        ("support-primary", &fam, "fake-500"),
        ("support-fallback", &claude, "claude-sonnet-4-5"),
    ] {
        let created = api
            .create_model(&json!({"name": name, "provider_id": provider_id,
                "upstream_model": upstream, "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0}))
            .await
            .unwrap_or_else(|e| panic!("create model {name}: {e}"));
        ids.push(id_of(&created).unwrap());
    }
    api.create_route(&json!({"name": "support", "strategy": "priority",
        "candidates": [{"model_id": ids[0]}, {"model_id": ids[1]}]}))
        .await
        .expect("route");
    let key = api
        .create_key(&json!({"name": "sdk"}))
        .await
        .expect("create key")
        .key;
    let origin = dp.base_url();
    let client = http_client();
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let r = chat(
                &client,
                &origin,
                &key,
                &json!({"model": "support", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(())
        },
    )
    .await
    .expect("the route reached the data plane");

    // Only the route test runs (`-k`); the suite's other settings must still be present.
    let pytest = pytest_command(
        &venv,
        &[
            "-k",
            "a_route_fails_over",
            "control-plane/tests/sdk/test_openai_sdk.py",
        ],
        &[
            ("SY_BASE_URL", &origin),
            ("SY_KEY", &key),
            ("SY_ROUTE_FAILOVER", "support"),
            ("SY_MODEL_ECHO", "unused"),
            ("SY_MODEL_CHAT", "unused"),
            ("SY_MODEL_CUT", "unused"),
            ("SY_CHAT_MODELS", "unused"),
            ("SY_EMBED_MODELS", "unused"),
        ],
    );
    let (ok, output) = run("pytest", pytest, PYTEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{output}");
    assert!(
        ok && output.contains("1 passed"),
        "the SDK route test failed:\n{output}\n----- data plane log tail -----\n{}",
        tail(&dp.logs_text(), 80)
    );
    deployment.cleanup().await;
}

/// Issue 14 as the official SDKs meet it, on separate processes (a control plane and a data
/// plane on Postgres and a `redis-server` of this test's own): the response cache (hit, miss,
/// bypass, streamed replay in both SDKs' formats, two organizations, semantic threshold) and
/// guardrails (each PII detector, each mode, restoration in streams, policy filters), then
/// Redis stopped: the cache fails open (`tests/sdk_cache`, see `cache_env.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_meet_the_cache_and_guardrails() {
    let venv = sdk_venv().await;
    let mut redis = testkit::redis_server::RedisServer::start().await;
    let (deployment, cp, dp) = distributed("dp-cache", Some(redis.url())).await;
    let openai = FakeOpenAi::start_with_key(OPENAI_KEY).await.unwrap();

    // Organization A: a chat model on the fake, the echoing mock, an embedding model.
    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    api.signup("sdk-cache-a@example.com", PASSWORD, "Cache A")
        .await
        .expect("signup A");
    let fam = provider(
        &api,
        json!({"name": "fake-openai", "kind": "openai_compatible",
               "base_url": openai.base_url(), "api_key": OPENAI_KEY}),
    )
    .await;
    let mock = provider(&api, json!({"name": "mock", "kind": "mock"})).await;
    model(&api, "chat", &fam, "gpt-4o-mini").await;
    model(&api, "echo", &mock, "mock-echo").await;
    api.create_model(
        &json!({"name": "words", "provider_id": fam, "mode": "embedding",
        "upstream_model": testkit::fake_openai::MODEL_EMBED_WORDS,
        "input_price_per_mtok": 0.02, "output_price_per_mtok": 0.0}),
    )
    .await
    .expect("embedding model");
    let key = |name: &'static str, cache: Value| {
        let api = &api;
        async move {
            api.create_key(&json!({"name": name, "cache": cache}))
                .await
                .unwrap_or_else(|e| panic!("key {name}: {e}"))
        }
    };
    let exact = key("exact", json!({"mode": "exact", "ttl_seconds": 600})).await;
    let semantic = key(
        "semantic",
        json!({"mode": "semantic", "min_similarity": 0.8, "embedding_model": "words"}),
    )
    .await;
    let strict = key(
        "strict",
        json!({"mode": "semantic", "min_similarity": 0.999, "embedding_model": "words"}),
    )
    .await;
    let mut guarded = Vec::new();
    for (name, mode, restore) in [
        ("pii-block", "block", false),
        ("pii-redact", "redact", true),
        ("pii-mask", "redact", false),
        ("pii-off", "off", false),
    ] {
        let created = key(name, Value::Null).await;
        let mut policy = json!({
            "name": name,
            "scope": "key",
            "scope_id": created.id,
            "pii": {"mode": mode, "restore": restore,
                    "custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}]},
        });
        if mode == "off" {
            policy["blocked_terms"] = json!(["project falcon"]);
            policy["max_prompt_tokens"] = json!(200);
            policy["allowed_tools"] = json!(["get_weather"]);
        }
        api.expect(
            reqwest::Method::POST,
            "/api/v1/guardrails",
            Some(&policy),
            reqwest::StatusCode::CREATED,
        )
        .await
        .unwrap_or_else(|e| panic!("guardrail {name}: {e}"));
        guarded.push(created.key);
    }

    // Organization B: the same model name on the same upstream.
    let mut api_b = ControlApi::new(&cp.base_url()).unwrap();
    api_b
        .signup("sdk-cache-b@example.com", PASSWORD, "Cache B")
        .await
        .expect("signup B");
    let fam_b = provider(
        &api_b,
        json!({"name": "fake-openai", "kind": "openai_compatible",
               "base_url": openai.base_url(), "api_key": OPENAI_KEY}),
    )
    .await;
    model(&api_b, "chat", &fam_b, "gpt-4o-mini").await;
    let other = api_b
        .create_key(&json!({"name": "b", "cache": {"mode": "exact"}}))
        .await
        .expect("key B");

    // Everything reached the data plane once the last guardrail redacts and B's key answers.
    let origin = dp.base_url();
    let client = http_client();
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let r = chat(
            &client,
            &origin,
            &guarded[2],
            &json!({"model": "echo", "messages": [{"role": "user", "content": "a@example.com"}]}),
        )
        .await?;
            let body: Value = r.json().await?;
            anyhow::ensure!(
                body["choices"][0]["message"]["content"] == "[EMAIL_1]",
                "not yet redacted: {body}"
            );
            let r = chat(
                &client,
                &origin,
                &other.key,
                &json!({"model": "chat", "messages": [{"role": "user", "content": "probe"}]}),
            )
            .await?;
            anyhow::ensure!(r.status() == 200, "B: {}", r.status());
            Ok(())
        },
    )
    .await
    .expect("keys, models and guardrails reached the data plane");

    let metrics_url = format!("{origin}/metrics");
    let env = [
        ("SY_BASE_URL", origin.as_str()),
        ("SY_METRICS_URL", metrics_url.as_str()),
        ("SY_MODEL_CHAT", "chat"),
        ("SY_MODEL_ECHO", "echo"),
        ("SY_KEY_EXACT", exact.key.as_str()),
        ("SY_KEY_OTHER_ORG", other.key.as_str()),
        ("SY_KEY_SEMANTIC", semantic.key.as_str()),
        ("SY_KEY_STRICT", strict.key.as_str()),
        ("SY_KEY_PII_BLOCK", guarded[0].as_str()),
        ("SY_KEY_PII_REDACT", guarded[1].as_str()),
        ("SY_KEY_PII_MASK", guarded[2].as_str()),
        ("SY_KEY_PII_OFF", guarded[3].as_str()),
    ];
    let suite = "control-plane/tests/sdk_cache";
    for (phase, marker) in [("Redis up", "not redis_down"), ("Redis down", "redis_down")] {
        if marker == "redis_down" {
            redis.stop().await;
        }
        let pytest = pytest_command(&venv, &["-m", marker, suite], &env);
        let (ok, output) = run("pytest", pytest, PYTEST_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{output}");
        let summary = output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .to_owned();
        assert!(
            ok && summary.contains("passed") && !summary.contains("skipped"),
            "the cache and guardrails SDK suite failed ({phase}: {summary}):\n{output}\n----- data plane log tail -----\n{}",
            tail(&dp.logs_text(), 80)
        );
    }
    deployment.cleanup().await;
}
