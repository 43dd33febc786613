//! The direct-relay half of the call bridge: once the caller and the person
//! are merged and the call is steady — both legs RTP legs that can be relayed,
//! the person's first words heard, nobody supervising, nobody on hold, nothing
//! queued for either side — the bridge offers both legs to the relay plane
//! (`LegCommand::Park`), and takes them back (`LegCommand::Unpark`) the moment
//! that stops being true, before anything else goes to them. While relayed the
//! legs' audio never reaches the bridge: the plane forwards what the peers
//! send, so nothing the gateway makes (the whisper above all) can travel it.

use super::{BridgeOutput, CallBridge};
use crate::call::handoff::HandoffState;
use crate::legs::{LegCommand, RelayOffer};

/// What the bridge knows about relaying the merged call directly.
#[derive(Debug, Default)]
pub(super) struct DirectRelay {
    /// The caller's leg announced it can be relayed.
    pub(super) caller_can: bool,
    /// The human agent whose leg announced it can be relayed.
    pub(super) human_can: Option<String>,
    /// Both legs were offered to the plane and not taken back since.
    offered: bool,
}

impl CallBridge {
    /// Whether the merged call may be relayed by the plane now.
    fn relay_allowed(&self) -> bool {
        self.config.direct_relay
            && self.relay.caller_can
            && self.human.is_some()
            && self.relay.human_can == self.human
            && matches!(self.handoff.state(), HandoffState::Merged { .. })
            && self.awaiting_first_words.is_none()
            && !self.agent_hold
            && !self.human_away
            && !self.closing
            && self.finishing.is_none()
            && self.supervision.on.is_none()
            && self.playout.queued_frames() == 0
            && self.human_playout.queued_frames() == 0
    }

    /// Offers the legs to the plane, or takes them back, as the call changes.
    pub(super) fn update_relay(&mut self) {
        if self.ended {
            return;
        }
        let allowed = self.relay_allowed();
        if allowed && !self.relay.offered {
            self.relay.offered = true;
            let offer = RelayOffer::default();
            self.emit(BridgeOutput::ToCaller(LegCommand::Park(offer.clone())));
            self.emit(BridgeOutput::ToHuman(LegCommand::Park(offer)));
        } else if !allowed && self.relay.offered {
            self.relay.offered = false;
            self.emit(BridgeOutput::ToCaller(LegCommand::Unpark));
            self.emit(BridgeOutput::ToHuman(LegCommand::Unpark));
        }
    }

    /// Media for a leg while the legs are offered to the plane: a change that
    /// needs the call back takes them back first (the `Unpark` goes out before
    /// this); otherwise it is a frame from before the park, which the plane now
    /// carries, and is dropped (true).
    pub(super) fn relay_would_drop(&mut self, out: &BridgeOutput) -> bool {
        if !self.relay.offered {
            return false;
        }
        let media = matches!(
            out,
            BridgeOutput::ToCaller(LegCommand::Audio(_) | LegCommand::Dtmf(_))
                | BridgeOutput::ToHuman(LegCommand::Audio(_) | LegCommand::Dtmf(_))
        );
        if !media {
            return false;
        }
        self.update_relay();
        self.relay.offered
    }

    /// Whether the legs are (offered to be) relayed by the plane.
    pub fn relayed(&self) -> bool {
        self.relay.offered
    }
}
