//! Form and query parsing (application/x-www-form-urlencoded bodies, any content type):
//! duplicates, bad percent-encoding and invalid UTF-8 are errors, never panics.
#![no_main]

use authserver::oauth::form::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        Some("application/json"),
        None,
    ] {
        if let Ok(form) = Form::parse(content_type, data) {
            for name in ["grant_type", "scope", "resource", "client_id"] {
                let _ = form.get(name);
                let _ = form.list(name);
                let _ = form.require(name);
            }
        }
    }
});
