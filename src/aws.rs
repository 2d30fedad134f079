//! What the S3 and EC2 adapters share about the AWS SDK: turning a request that never got a
//! service answer (no credentials, no network, a timeout, an unreadable response) into a kind
//! and advice an operator can act on. Service errors (`AccessDenied`, `NoSuchBucket`, ...) are
//! each adapter's own.

// Both SDK crates re-export the same smithy types; the S3 crate's paths serve for both.
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;

/// How a request without a service answer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The request could not be built: a bug or a bad setting, not worth retrying.
    Other,
    /// No answer in time, no connection, an unreadable answer: try again later.
    Transient,
    /// No credentials could be found.
    NoCredentials,
}

/// Where the request went, for messages: `"S3"` or `"EC2"`, the configured endpoint, the
/// attempts the SDK made and the settings to check when nothing answers.
pub(crate) struct Service<'a> {
    pub name: &'static str,
    pub endpoint: Option<&'a str>,
    pub attempts: u32,
    pub reach: &'static str,
}

/// The kind and advice for an error that is not a service answer, or `None` for a service
/// error, which the adapter classifies by its code.
pub(crate) fn transport_failure<E>(
    service: &Service<'_>,
    err: &SdkError<E, HttpResponse>,
) -> Option<(Transport, String)>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let Service {
        name,
        attempts,
        reach,
        ..
    } = service;
    let at = service
        .endpoint
        .map(|e| format!(" at {e}"))
        .unwrap_or_default();
    Some(match err {
        SdkError::ConstructionFailure(_) => (
            Transport::Other,
            format!("the request could not be built: {}", error_chain(err)),
        ),
        SdkError::TimeoutError(_) => (
            Transport::Transient,
            format!("{name}{at} did not answer in time ({attempts} attempts); {reach}"),
        ),
        SdkError::DispatchFailure(d) => {
            let text = error_chain(err);
            if d.is_other() && looks_like_missing_credentials(&text) {
                (
                    Transport::NoCredentials,
                    format!(
                        "no usable AWS credentials ({text}); on EKS give lifeboat's service account an IAM role (IRSA: the eks.amazonaws.com/role-arn annotation), elsewhere set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
                    ),
                )
            } else {
                (
                    Transport::Transient,
                    format!("could not reach {name}{at} ({attempts} attempts): {text}; {reach}"),
                )
            }
        }
        SdkError::ResponseError(_) => (
            Transport::Transient,
            format!(
                "the response could not be read ({attempts} attempts): {}",
                error_chain(err)
            ),
        ),
        _ => return None,
    })
}

/// An error and its causes on one line. The SDK's own `DisplayErrorContext` appends a `Debug`
/// dump, which is noise in a message meant for an operator.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The SDK reports a failed credential lookup as a dispatch failure; its text is the only
/// way to tell it from a network error.
fn looks_like_missing_credentials(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("credential") || t.contains("identity")
}
