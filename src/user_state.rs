//! What a user's Durable Object (one per verified `sub`) stores and answers. The edge only
//! moves these values between the Worker and the object; the decisions are made here.

use serde::{Deserialize, Serialize};

/// A message to a user's object, sent as JSON. One message per request: one round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UserCommand {
    /// The state the proxy needs to admit a request.
    Check,
    /// Tokens of this user issued at or before `at` (Unix seconds) stop working.
    Revoke { at: i64 },
    /// Lifts a revocation.
    Unrevoke,
}

/// The stored state of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub revoked_at: Option<i64>,
}

/// The object's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReply {
    pub revoked_at: Option<i64>,
}

impl UserRecord {
    /// Applies a command; says whether the record changed (and so must be stored).
    pub fn apply(&mut self, command: &UserCommand) -> (UserReply, bool) {
        let before = self.clone();
        match command {
            UserCommand::Check => {}
            UserCommand::Revoke { at } => self.revoked_at = Some(*at),
            UserCommand::Unrevoke => self.revoked_at = None,
        }
        (UserReply { revoked_at: self.revoked_at }, *self != before)
    }
}

/// Whether a token issued at `issued_at` is revoked. A revocation covers its own second, so a
/// token minted in the same second as the revoke is revoked too; a token without `iat` or
/// `nbf` cannot be placed in time and is revoked whenever its user is.
pub fn is_revoked(issued_at: Option<i64>, revoked_at: Option<i64>) -> bool {
    match (issued_at, revoked_at) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(issued_at), Some(revoked_at)) => issued_at <= revoked_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_and_unrevoke_change_the_record() {
        let mut record = UserRecord::default();
        assert_eq!(record.apply(&UserCommand::Check), (UserReply { revoked_at: None }, false));
        assert_eq!(record.apply(&UserCommand::Revoke { at: 100 }), (UserReply { revoked_at: Some(100) }, true));
        assert_eq!(record.apply(&UserCommand::Check), (UserReply { revoked_at: Some(100) }, false));
        assert_eq!(record.apply(&UserCommand::Unrevoke), (UserReply { revoked_at: None }, true));
    }

    #[test]
    fn revocation_covers_tokens_issued_until_its_second() {
        assert!(!is_revoked(Some(50), None));
        assert!(is_revoked(Some(99), Some(100)));
        assert!(is_revoked(Some(100), Some(100)));
        assert!(!is_revoked(Some(101), Some(100)));
        assert!(is_revoked(None, Some(100)));
    }

    #[test]
    fn commands_have_a_stable_wire_form() {
        assert_eq!(serde_json::to_string(&UserCommand::Revoke { at: 5 }).unwrap(), r#"{"op":"revoke","at":5}"#);
        assert_eq!(serde_json::from_str::<UserCommand>(r#"{"op":"check"}"#).unwrap(), UserCommand::Check);
    }
}
