//! The `pub`, `sub` and `req` command-line tools.
//!
//! Options follow Mosquitto's `mosquitto_pub`, `mosquitto_sub` and
//! `mosquitto_rr` so their users feel at home (`-h` is the host, help is
//! `--help` only). Each tool is a clap `Args` struct plus an async `run_*`
//! function; the `switchboard` binary mounts them as subcommands. Errors come
//! back as one `anyhow` error whose message is a single line meant for the
//! terminal (`connection refused: 127.0.0.1:1883`).

mod connect;
mod format;
mod property;
mod publish;
mod request;
mod subscribe;

pub use connect::ConnectArgs;
pub use format::{OutputArgs, OutputFormat};
pub use property::PropertyArgs;
pub use publish::{run_pub, MessageArgs, PubArgs};
pub use request::{run_req, ReqArgs, RequestMessageArgs};
pub use subscribe::{run_sub, SubArgs};

/// The `-D` forms and `-F` specifiers, printed after every tool's option list.
const PROPERTY_HELP: &str = "\
MQTT 5 properties (-D, repeatable; requires -V 5):
  -D connect session-expiry-interval SECS | receive-maximum N | maximum-packet-size BYTES
             topic-alias-maximum N | request-response-information 0|1
             request-problem-information 0|1 | user-property NAME VALUE
  -D publish content-type TYPE | correlation-data DATA | message-expiry-interval SECS
             payload-format-indicator 0|1 | response-topic TOPIC | topic-alias N
             user-property NAME VALUE
  -D subscribe subscription-identifier N | user-property NAME VALUE
  -D unsubscribe user-property NAME VALUE
  -D disconnect session-expiry-interval SECS | reason-string TEXT | user-property NAME VALUE
  -D will will-delay-interval SECS | content-type TYPE | correlation-data DATA
          message-expiry-interval SECS | payload-format-indicator 0|1
          response-topic TOPIC | user-property NAME VALUE";

const FORMAT_HELP: &str = "\
Output format (-F):
  %t topic          %p payload        %q QoS            %r retain flag (0/1)
  %l payload length %m packet id      %x payload in hex %X payload in HEX
  %j JSON object    %U receive time (Unix seconds.nanoseconds)
  %C content type   %D correlation data   %E message expiry interval
  %F payload format indicator   %R response topic   %S subscription identifiers
  %P user properties (name:value, space separated)   %% a percent sign
  Escapes: \\n newline, \\t tab, \\r carriage return, \\\\ backslash.
  A newline follows every message unless -N is given.";

/// The after-help text of `sub` and `req`, which print messages.
fn properties_and_format_help() -> String {
    format!("{PROPERTY_HELP}\n\n{FORMAT_HELP}")
}

#[cfg(test)]
mod tests;
