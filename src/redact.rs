//! Keeps secrets out of everything stylemill prints or writes. SAS tokens are registered here
//! when credentials are resolved, and every log line, error message, report and panic message
//! passes through [`redact`], which also scrubs any `sig=` signature it finds in a URL, so that
//! a token that was never registered (a typo in a URL, say) is hidden too.

use std::sync::RwLock;

const MASK: &str = "<redacted>";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a secret (a SAS token, with or without its leading `?`) so that it is masked
/// wherever it would be shown.
pub fn register_secret(secret: &str) {
    let secret = secret.trim_start_matches('?');
    if secret.len() < 8 {
        return;
    }
    if let Ok(mut secrets) = SECRETS.write() {
        if !secrets.iter().any(|known| known == secret) {
            secrets.push(secret.to_string());
            secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
        }
    }
}

/// `text` with every registered secret and every `sig=` value masked.
pub fn redact(text: &str) -> String {
    let mut text = text.to_string();
    if let Ok(secrets) = SECRETS.read() {
        for secret in secrets.iter() {
            text = text.replace(secret.as_str(), MASK);
        }
    }
    mask_signatures(&text)
}

/// Masks the value of every `sig=` query parameter (the part of a SAS that grants access).
fn mask_signatures(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.to_ascii_lowercase().find("sig=") {
        let value_start = found + "sig=".len();
        masked.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let value_len = value
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(value.len());
        if value_len > 0 && !value.starts_with(MASK) {
            masked.push_str(MASK);
        } else {
            masked.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
    }
    masked.push_str(rest);
    masked
}

/// Prints panics through [`redact`], so that a panic message holding a URL does not leak it.
pub fn redact_panics() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{}", redact(&info.to_string()));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_signatures_are_masked() {
        register_secret("?sv=2022-11-02&ss=b&sig=abcDEF%2B123%3D");
        let shown = redact("GET http://h/c/b?sv=2022-11-02&ss=b&sig=abcDEF%2B123%3D failed");
        assert_eq!(shown, "GET http://h/c/b?<redacted> failed");
        let unregistered = redact("https://a.blob.core.windows.net/c/x.mp4?sp=r&SIG=zzz&se=1 nope");
        assert_eq!(
            unregistered,
            "https://a.blob.core.windows.net/c/x.mp4?sp=r&SIG=<redacted>&se=1 nope"
        );
        assert_eq!(redact("signature=fine"), "signature=fine");
    }
}
