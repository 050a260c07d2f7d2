//! The few calls the scenarios make to set up and to check: JSON in, JSON
//! out, any answer but a success an error naming the call.

use anyhow::bail;
use serde_json::Value;

/// POSTs `body` to `base` + `path` with `key`; the answer's JSON.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let answer = http
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?;
    let status = answer.status();
    if !status.is_success() {
        bail!("POST {path}: {status} {}", answer.text().await?);
    }
    Ok(answer.json().await?)
}

/// GETs `base` + `path` with `key`; the answer's JSON.
pub async fn get(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
) -> anyhow::Result<Value> {
    let answer = http
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await?;
    let status = answer.status();
    if !status.is_success() {
        bail!("GET {path}: {status} {}", answer.text().await?);
    }
    Ok(answer.json().await?)
}
