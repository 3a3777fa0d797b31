//! The Graph API calls the engine makes, over one shared reqwest client: check a number,
//! send, upload and download media, mark read, list templates. Every answer is bounded
//! (a broken or hostile server cannot make the gateway buffer without limit) and every
//! refusal comes back as a [`GraphError`] with Meta's code and words.

use crate::errors::{GraphError, retry_after};
use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use url::Url;
use wagate_core::content::TemplateInfo;
use wagate_core::credentials::CloudApiCredentials;

/// Answers other than media are small JSON documents.
const MAX_JSON_BYTES: usize = 1 << 20;

/// Where the Graph API is and which version of it to speak.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// `https://graph.facebook.com`, or a test's fake.
    pub base_url: Url,
    /// `v21.0`.
    pub version: String,
    /// Longest wait for one call.
    pub timeout: Duration,
    /// Largest inbound media file fetched.
    pub max_media_bytes: u64,
}

impl GraphConfig {
    pub fn new(base_url: Url, version: impl Into<String>) -> Self {
        Self {
            base_url,
            version: version.into(),
            timeout: Duration::from_secs(30),
            max_media_bytes: 100 << 20,
        }
    }
}

/// What the number's record says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NumberInfo {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
}

/// A downloaded attachment.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub data: Bytes,
    pub mime_type: Option<String>,
}

#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    config: GraphConfig,
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            // Meta's media links redirect within Meta; never to wherever a body says.
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(GraphError::unreachable)?;
        Ok(Self { http, config })
    }

    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    fn url(&self, path: &[&str]) -> Result<Url, GraphError> {
        let mut url = self.config.base_url.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| GraphError::unreachable("the Graph API URL cannot take a path"))?;
            segs.pop_if_empty();
            segs.push(&self.config.version);
            for p in path {
                segs.push(p);
            }
        }
        Ok(url)
    }

    fn request(&self, method: Method, url: Url, creds: &CloudApiCredentials) -> RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(&creds.access_token)
    }

    /// The number's record: proves the token works for it.
    pub async fn number(&self, creds: &CloudApiCredentials) -> Result<NumberInfo, GraphError> {
        let mut url = self.url(&[&creds.phone_number_id])?;
        url.query_pairs_mut()
            .append_pair("fields", "display_phone_number,verified_name");
        let answer = self.request(Method::GET, url, creds).send().await;
        json(answer).await
    }

    /// Posts a message; Meta's id for it (`wamid…`).
    pub async fn send(
        &self,
        creds: &CloudApiCredentials,
        body: &Value,
    ) -> Result<String, GraphError> {
        #[derive(Deserialize)]
        struct Sent {
            #[serde(default)]
            messages: Vec<SentId>,
        }
        #[derive(Deserialize)]
        struct SentId {
            id: String,
        }
        let url = self.url(&[&creds.phone_number_id, "messages"])?;
        let answer = self
            .request(Method::POST, url, creds)
            .json(body)
            .send()
            .await;
        let sent: Sent = json(answer).await?;
        sent.messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| GraphError::unreachable("the send was answered without a message id"))
    }

    /// Marks read (and shows typing): answered `{success: true}`.
    pub async fn post_status(
        &self,
        creds: &CloudApiCredentials,
        body: &Value,
    ) -> Result<(), GraphError> {
        let url = self.url(&[&creds.phone_number_id, "messages"])?;
        let answer = self
            .request(Method::POST, url, creds)
            .json(body)
            .send()
            .await;
        json::<Value>(answer).await.map(|_| ())
    }

    /// Uploads media for a message; Meta's id for it.
    pub async fn upload(
        &self,
        creds: &CloudApiCredentials,
        data: &[u8],
        mime_type: &str,
        file_name: Option<&str>,
    ) -> Result<String, GraphError> {
        #[derive(Deserialize)]
        struct Uploaded {
            id: String,
        }
        let part = reqwest::multipart::Part::bytes(data.to_vec())
            .file_name(file_name.unwrap_or("file").to_owned())
            .mime_str(mime_type)
            .map_err(|e| GraphError {
                status: 400,
                code: None,
                subcode: None,
                message: format!("the media type {mime_type:?} cannot be uploaded: {e}"),
                retry_after: None,
            })?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime_type.to_owned())
            .part("file", part);
        let url = self.url(&[&creds.phone_number_id, "media"])?;
        let answer = self
            .request(Method::POST, url, creds)
            .multipart(form)
            .send()
            .await;
        let up: Uploaded = json(answer).await?;
        Ok(up.id)
    }

    /// Fetches an inbound attachment: its record names a short-lived URL, fetched with the
    /// same token. Larger than the limit: an error (the message is kept without it).
    pub async fn download(
        &self,
        creds: &CloudApiCredentials,
        media_id: &str,
    ) -> Result<Downloaded, GraphError> {
        #[derive(Deserialize)]
        struct Record {
            url: String,
            #[serde(default)]
            mime_type: Option<String>,
            #[serde(default)]
            file_size: Option<u64>,
        }
        let url = self.url(&[media_id])?;
        let answer = self.request(Method::GET, url, creds).send().await;
        let record: Record = json(answer).await?;
        let max = self.config.max_media_bytes;
        if record.file_size.is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let link = Url::parse(&record.url)
            .map_err(|e| GraphError::unreachable(format!("the media record's URL: {e}")))?;
        if !matches!(link.scheme(), "https" | "http") {
            return Err(GraphError::unreachable(
                "the media record's URL is not HTTP",
            ));
        }
        let answer = self
            .request(Method::GET, link, creds)
            .send()
            .await
            .map_err(GraphError::unreachable)?;
        let answer = checked(answer).await?;
        let mime_type = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(record.mime_type);
        let data = bounded(answer, max).await?;
        Ok(Downloaded { data, mime_type })
    }

    /// The business account's approved templates (every page, up to a sane bound).
    pub async fn templates(
        &self,
        creds: &CloudApiCredentials,
        waba_id: &str,
    ) -> Result<Vec<TemplateInfo>, GraphError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            data: Vec<TemplateInfo>,
            #[serde(default)]
            paging: Option<Paging>,
        }
        #[derive(Deserialize)]
        struct Paging {
            #[serde(default)]
            cursors: Option<Cursors>,
            #[serde(default)]
            next: Option<String>,
        }
        #[derive(Deserialize)]
        struct Cursors {
            #[serde(default)]
            after: Option<String>,
        }
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        // 20 pages of 100: more templates than Meta lets one account have.
        for _ in 0..20 {
            let mut url = self.url(&[waba_id, "message_templates"])?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("status", "APPROVED")
                    .append_pair("limit", "100");
                if let Some(a) = &after {
                    q.append_pair("after", a);
                }
            }
            let answer = self.request(Method::GET, url, creds).send().await;
            let page: Page = json(answer).await?;
            all.extend(page.data);
            let next = page.paging.and_then(|p| {
                p.next?;
                p.cursors?.after
            });
            match next {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        Ok(all)
    }
}

fn too_large(max: u64) -> GraphError {
    GraphError {
        status: 413,
        code: None,
        subcode: None,
        message: format!("the media file is larger than the limit of {max} bytes"),
        retry_after: None,
    }
}

/// A 2xx answer, or the error it carries.
async fn checked(answer: Response) -> Result<Response, GraphError> {
    let status = answer.status();
    if status.is_success() {
        return Ok(answer);
    }
    let wait = retry_after(
        answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    );
    let body = bounded(answer, MAX_JSON_BYTES as u64)
        .await
        .unwrap_or_default();
    Err(GraphError::from_answer(status.as_u16(), &body, wait))
}

async fn json<T: serde::de::DeserializeOwned>(
    answer: Result<Response, reqwest::Error>,
) -> Result<T, GraphError> {
    let answer = checked(answer.map_err(GraphError::unreachable)?).await?;
    let body = bounded(answer, MAX_JSON_BYTES as u64).await?;
    serde_json::from_slice(&body).map_err(|e| {
        GraphError::unreachable(format!("the Graph API's answer was not understood: {e}"))
    })
}

/// The body, refused once it passes `max` bytes.
async fn bounded(mut answer: Response, max: u64) -> Result<Bytes, GraphError> {
    if answer.content_length().is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let mut out = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(GraphError::unreachable)? {
        if (out.len() + chunk.len()) as u64 > max {
            return Err(too_large(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}
