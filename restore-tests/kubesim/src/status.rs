//! `metav1.Status` errors, worded as the real apiserver words them (kubectl prints them verbatim).

use serde_json::{Value, json};

/// An API error: an HTTP status and the Status body that goes with it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
    /// Extra response headers (e.g. `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message.into(), "reason": reason, "code": code,
        });
        if reason.is_empty() {
            body.as_object_mut().expect("object").remove("reason");
        }
        ApiError {
            code,
            body,
            headers: Vec::new(),
        }
    }

    /// Attaches `details` (name, group, kind as the plural, causes).
    #[must_use]
    pub fn details(mut self, details: Value) -> Self {
        self.body["details"] = details;
        self
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    /// The server has no such path or resource.
    pub fn route_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .details(json!({}))
    }

    pub fn not_found(qualified: &str, group: &str, plural: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
            .details(details(name, group, plural))
    }

    pub fn already_exists(qualified: &str, group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .details(details(name, group, plural))
    }

    pub fn conflict(qualified: &str, group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .details(details(name, group, plural))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .details(json!({}))
    }

    pub fn unsupported_media_type(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    pub fn forbidden(qualified: &str, group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{qualified} \"{name}\" is forbidden: {why}"),
        )
        .details(details(name, group, plural))
    }

    /// 422 Invalid with one cause per field error: `Kind "name" is invalid: field: msg`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(&str, String, String)]) -> Self {
        let text: Vec<String> = causes.iter().map(|(_, f, m)| format!("{f}: {m}")).collect();
        let message = if text.len() == 1 {
            format!("{kind} \"{name}\" is invalid: {}", text[0])
        } else {
            format!("{kind} \"{name}\" is invalid: [{}]", text.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(reason, field, msg)| json!({"reason": reason, "message": msg, "field": field}))
            .collect();
        let mut d = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        Self::new(422, "Invalid", message).details(d)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The continue token's snapshot is gone. `inconsistent` lets a client carry on from the next
    /// key at the current revision.
    pub fn expired_continue(inconsistent: Option<String>) -> Self {
        let mut e = Self::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        );
        if let Some(token) = inconsistent {
            e.body["metadata"] = json!({"continue": token});
        }
        e
    }

    #[must_use]
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// `details` as the apiserver fills it: `kind` is the plural, `group` omitted for core.
pub fn details(name: &str, group: &str, plural: &str) -> Value {
    let mut d = json!({"name": name, "kind": plural});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// A success Status, as returned by deletes of most types.
pub fn success(name: &str, group: &str, plural: &str, uid: &str) -> Value {
    let mut d = details(name, group, plural);
    d["uid"] = json!(uid);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}
