//! The reasons of conditions and events, beside the API types that carry them (as Flux and cert-manager keep
//! theirs): Argo CD's health checks, `kubectl tanium`, the chart's alerts and people's scripts read them, so each is
//! spelled once, here. Reasons of Gateway errors are the client's (`GatewayError::reason`), since `crd` knows no
//! Gateway; this module names the rest. Everything the controllers write as a reason comes from here
//! (`tests/reasons.rs` fails on a reason spelled as a literal in `src/controller/`).

use std::fmt;

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A condition's or event's reason: CamelCase, stable, one per situation a person acts on differently.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    /// The operator is working on this generation of the object and has not decided yet (Ready=False on a new
    /// generation, before any Gateway request).
    Progressing,

    // Gates: held before anything is deployed; nothing reached the endpoints.
    /// The spec cannot be deployed as written (targets, params); fix the manifest.
    InvalidSpec,
    /// The operator's admin policy does not let this namespace or package deploy.
    PolicyDenied,
    /// Tanium has no package of that name.
    UnknownPackage,
    /// The params do not fit the package's parameters.
    WrongParams,
    /// A listed endpoint id is unknown to Tanium.
    UnknownEndpoints,
    /// A live preview was answered by fewer endpoints than `spec.preview.minAnsweredPercent` of those expected.
    PreviewIncomplete,
    /// No endpoint matches the targets.
    NoTargets,
    /// More endpoints match than `spec.safety.maxTargets` or the operator's ceiling allows.
    TooManyTargets,
    /// The preview waits for a person's approval annotation.
    AwaitingPreviewApproval,
    /// `spec.suspend` holds the deployment.
    Suspended,

    // The deployment and its life in Tanium.
    /// The preview ran (condition Previewed).
    Previewed,
    /// The intent is recorded; `actionPerform` is on its way.
    Deploying,
    /// Tanium created the scheduled action(s).
    Deployed,
    /// An action of this manifest's name already existed (a re-created object): followed, not deployed again.
    Adopted,
    /// An earlier attempt whose answer was lost did reach Tanium: found by name and followed.
    Recovered,
    /// Tanium refused the deployment, and a look-up by name confirmed nothing was created.
    DeployRefused,
    /// Whether the deployment reached Tanium is not known yet; it is looked up by name, never sent blindly.
    OutcomeUnknown,
    /// Tanium holds the scheduled action for approval by a user other than the operator's.
    AwaitingTaniumApproval,
    /// Endpoints are running the action.
    Running,

    // Terminal outcomes.
    /// Every targeted endpoint completed it.
    Completed,
    /// It ended with some endpoints that did not run it (expired, or never targeted).
    CompletedPartially,
    /// It ended with some endpoints reporting failure.
    CompletedWithFailures,
    /// It expired before any endpoint ran it.
    Expired,
    /// The operator stopped the Tanium action(s) on the object's deletion (event).
    Stopped,
    /// Someone stopped it in Tanium before every target finished.
    StoppedInTanium,

    // The object itself.
    /// `ttlSecondsAfterFinished` under a GitOps tool: deleted and re-created again and again.
    TTLUnderGitOps,
    /// Deletion waits: an intent without ids may still reach Tanium, or the Gateway did not answer.
    DeletionBlocked,
    /// Deletion gave up waiting for the Gateway and let the object go; Tanium may still run its action.
    DeletionTimedOut,
    /// An object of this kind that the operator cannot decode (event on the object).
    InvalidObject,

    // TaniumTag.
    /// A round adds the tags to the endpoints that lack them.
    Tagging,
    /// A round removes tags dropped from the spec.
    Removing,
    /// Every matching endpoint carries the tags.
    InSync,
    /// Another TaniumTag (named in the message) owns one of the tags: it claimed or applied it first. This object
    /// neither adds nor removes that tag while the other claims it.
    TagOwnedElsewhere,
    /// A round was deployed (event).
    RoundStarted,
    /// A round ended (event; a warning when some endpoints failed or expired).
    RoundFinished,

    // TaniumEndpointInspection.
    /// `spec.endpoint` names no endpoint Tanium knows.
    EndpointNotFound,
    /// `spec.endpoint.computerName` names several endpoints.
    EndpointAmbiguous,
    /// The endpoint could not be reached through Direct Connect (offline, or without the module).
    EndpointUnreachable,
    /// The endpoint was read; the summary is in status.
    Inspected,
    /// The Gateway had dropped the connection, and another was opened (event).
    Reconnected,
    /// The requested process was ended (event).
    ProcessEnded,
    /// The endpoint has no process with that pid and name (event).
    ProcessNotFound,
    /// The Gateway refused to end the process (event).
    KillFailed,
    /// The kill was not sent (no connection): it is tried again at the next refresh (event).
    KillDeferred,
    /// The kill may or may not have ended the process; it is never sent again (event).
    KillOutcomeUnknown,
    /// `spec.killProcess` names the Tanium client's own process or a system one; nothing is sent unless an admin
    /// allows such kills.
    ProtectedProcess,

    // Which Tanium server an object's requests go to (`spec.connectionRef`).
    /// `spec.connectionRef` names a TaniumConnection or ClusterTaniumConnection that does not exist.
    ConnectionNotFound,
    /// The ClusterTaniumConnection named does not list this object's namespace in `spec.namespaces`.
    ConnectionNotAllowed,
    /// A TaniumConnection or ClusterTaniumConnection: the Gateway answered with its token (Ready=True).
    Connected,
    /// A connection's token Secret cannot be read: missing, without the key, or in a namespace the operator may
    /// not read Secrets in (chart value `connections.secretNamespaces`).
    TokenSecretUnreadable,
    /// The connection named exists but cannot be used yet (its Secret, its token or its Gateway: its own Ready
    /// condition says which); the object waits for it and nothing is sent elsewhere.
    ConnectionNotReady,

    // The operator's own conditions on every object.
    /// `GatewayTLSVerified=False`: the operator does not check the Gateway's certificate.
    VerificationDisabled,
    /// `GatewayToken=False`: token rotation failed several times in a row.
    TokenRotationFailing,
    /// `GatewayToken=False`: rotated, but the new token is not in the Secret yet.
    TokenNotSaved,
    /// `GatewayToken=False`: the new token was lost; a person must provide one.
    TokenRotationLost,
    /// `GatewayToken=False`: this connection asks for rotation of a token Secret another rotation already keeps (a
    /// second connection object, or the operator's own token): it is not rotated here, or the two would lock each
    /// other out. Give each connection its own token, or ask for rotation in one place.
    TokenSecretShared,
    /// The token was rotated (event on the Secret).
    TokenRotated,
}

impl Reason {
    /// The reason spelled `s`, if it is one of these (not a Gateway error's).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Ready=False for this reason means the object cannot get on without a person: a spec or policy to change,
    /// an approval to give, `suspend` to lift, or an end that will not change (kstatus's `Stalled`, which Flux
    /// and `kubectl wait` read as failed). Otherwise the operator keeps at it by itself (`Reconciling`).
    pub const fn stalls(self) -> bool {
        use Reason::*;
        match self {
            InvalidSpec
            | PolicyDenied
            | UnknownPackage
            | WrongParams
            | UnknownEndpoints
            | TooManyTargets
            | AwaitingPreviewApproval
            | Suspended
            | DeployRefused
            | AwaitingTaniumApproval
            | Expired
            | StoppedInTanium
            | DeletionTimedOut
            | InvalidObject
            | EndpointNotFound
            | EndpointAmbiguous
            | TokenRotationLost
            | ProtectedProcess
            | TagOwnedElsewhere
            | ConnectionNotFound
            | ConnectionNotAllowed
            | TokenSecretUnreadable => true,
            // The fleet, a reading or the Gateway may change by itself; the operator looks again.
            Progressing
            | ConnectionNotReady
            | Connected
            | PreviewIncomplete
            | NoTargets
            | Previewed
            | Deploying
            | Deployed
            | Adopted
            | Recovered
            | OutcomeUnknown
            | Running
            | Completed
            | CompletedPartially
            | CompletedWithFailures
            | Stopped
            | TTLUnderGitOps
            | DeletionBlocked
            | Tagging
            | Removing
            | InSync
            | RoundStarted
            | RoundFinished
            | EndpointUnreachable
            | Inspected
            | Reconnected
            | ProcessEnded
            | ProcessNotFound
            | KillFailed
            | KillDeferred
            | KillOutcomeUnknown
            | VerificationDisabled
            | TokenRotationFailing
            | TokenNotSaved
            | TokenSecretShared
            | TokenRotated => false,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_camel_case_words() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{s}"
            );
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        }
    }
}
