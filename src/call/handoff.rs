//! The warm-handoff state machine (sans-IO, pure).
//!
//! ```text
//! Ai ─escalate─► Escalating ─disclosure played─► Queued ─agent offered─► Ringing
//!                    │                            ▲  │                     │ │
//!                    │                            │  └─no agent / too long─┼─┼──► Callback ─► Ended
//!                    │                            └──declined / timeout────┘ │
//!                    │                                                       accepted
//!                    ▼                                                        ▼
//!                 (caller hangs up in any state) ──────────► Ended ◄── Merged ◄─whisper done/skip── Whispering
//!
//! Merged, Escalating, Queued, Ringing ─return to AI─► Ai (the AI is told the outcome)
//! ```
//!
//! Each state yields a [`RoutingMatrix`]: who hears which source. In every state
//! the whisper reaches the human agent only — the matrix type itself refuses any
//! other route, and a unit test walks every state to prove it.

use crate::media::mixer::{Listener, RoutingMatrix, Source};
use std::time::{Duration, Instant};

/// Where the handoff stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffState {
    /// The AI agent is talking with the caller.
    Ai,
    /// The caller hears why a human is needed and the expected wait.
    Escalating,
    /// The caller hears hold audio; no agent is ringing.
    Queued,
    /// An agent was offered the call (screen-pop) and is being rung.
    Ringing {
        /// The agent.
        agent: String,
        /// When the offer lapses.
        deadline: Instant,
    },
    /// The agent answered and hears the whisper; the caller still hears hold audio.
    Whispering {
        /// The agent.
        agent: String,
    },
    /// Caller and agent talk; the AI is gone.
    Merged {
        /// The agent.
        agent: String,
    },
    /// The caller hears that they will be called back.
    Callback,
    /// Over.
    Ended,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffInput {
    /// The monitor decided to escalate.
    Escalate,
    /// The disclosure prompt finished playing.
    DisclosurePlayed,
    /// Routing offered the call to an agent.
    Offered {
        /// The agent.
        agent: String,
    },
    /// The ringing agent accepted.
    Accepted {
        /// The agent.
        agent: String,
    },
    /// The ringing agent declined, or their console went away.
    Declined {
        /// The agent.
        agent: String,
    },
    /// The whisper finished (or the agent skipped it).
    WhisperDone,
    /// The agent hung up (or their phone leg ended).
    AgentGone,
    /// The agent's console vanished and did not come back within the grace.
    AgentLost,
    /// The agent hands the call on (to another agent or skill).
    Transfer,
    /// Routing has nobody (none online, after hours, or the wait is too long).
    NoAgent,
    /// The callback prompt finished playing.
    CallbackPlayed,
    /// The caller goes back to the AI agent (the person is done, or nobody
    /// could take the call).
    ReturnToAi,
    /// The caller hung up.
    CallerGone,
}

/// What the call must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffAction {
    /// Flush the AI's audio and play the disclosure to the caller.
    PlayDisclosure,
    /// Put the call in the queue (screen-pop goes out with the offer).
    JoinQueue,
    /// Start hold audio for the caller.
    StartHold,
    /// Ask routing for the next agent (after a decline or a timeout).
    OfferNextAgent {
        /// The agent who did not take it.
        instead_of: String,
        /// They let it ring out (rather than declining, or dropping).
        missed: bool,
    },
    /// Play the whisper to this agent only.
    PlayWhisper {
        /// The agent.
        agent: String,
    },
    /// Stop hold, connect caller and agent, close the AI leg.
    Merge {
        /// The agent.
        agent: String,
    },
    /// Queue the call again for the transfer's target (the agent left it).
    Requeue {
        /// The agent who transferred it.
        from: String,
    },
    /// Tell the caller they will be called back, and save the callback.
    OfferCallback,
    /// Give the caller back to the AI agent (dialled again if its leg closed)
    /// and tell it how the handoff ended.
    ResumeAi,
    /// End the call.
    End,
}

/// Timeouts (passed in, never read from a clock).
#[derive(Debug, Clone, Copy)]
pub struct HandoffTimers {
    /// How long an offered agent may take to accept.
    pub ring_timeout: Duration,
}

impl Default for HandoffTimers {
    fn default() -> Self {
        HandoffTimers {
            ring_timeout: Duration::from_secs(20),
        }
    }
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Handoff {
    state: HandoffState,
    timers: HandoffTimers,
}

impl Handoff {
    /// A handoff in the AI phase.
    pub fn new(timers: HandoffTimers) -> Self {
        Handoff {
            state: HandoffState::Ai,
            timers,
        }
    }

    /// The current state.
    pub fn state(&self) -> &HandoffState {
        &self.state
    }

    /// Who hears what now.
    pub fn matrix(&self) -> RoutingMatrix {
        matrix_for(&self.state)
    }

    /// The next timeout, if one is running.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            HandoffState::Ringing { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// Checks timeouts at `now`.
    pub fn poll_timeout(&mut self, now: Instant) -> Vec<HandoffAction> {
        match &self.state {
            HandoffState::Ringing { agent, deadline } if now >= *deadline => {
                let agent = agent.clone();
                let mut actions = self.handle(HandoffInput::Declined { agent }, now);
                for action in &mut actions {
                    if let HandoffAction::OfferNextAgent { missed, .. } = action {
                        *missed = true;
                    }
                }
                actions
            }
            _ => Vec::new(),
        }
    }

    /// Applies an input at `now`; returns the actions to take, in order.
    /// Inputs that make no sense in the current state are ignored (no actions).
    pub fn handle(&mut self, input: HandoffInput, now: Instant) -> Vec<HandoffAction> {
        use HandoffAction as A;
        use HandoffInput as I;
        use HandoffState as S;
        if input == I::CallerGone {
            if self.state == S::Ended {
                return Vec::new();
            }
            self.state = S::Ended;
            return vec![A::End];
        }
        let (next, actions) = match (&self.state, input) {
            (S::Ai, I::Escalate) => (S::Escalating, vec![A::PlayDisclosure, A::JoinQueue]),
            (S::Escalating, I::DisclosurePlayed) => (S::Queued, vec![A::StartHold]),
            (S::Escalating, I::Offered { agent }) => (
                // The screen-pop may arrive while the disclosure still plays: ring now, hold after.
                S::Ringing {
                    agent,
                    deadline: now + self.timers.ring_timeout,
                },
                vec![],
            ),
            (S::Queued, I::Offered { agent }) => (
                S::Ringing {
                    agent,
                    deadline: now + self.timers.ring_timeout,
                },
                vec![],
            ),
            (S::Ringing { agent: a, .. }, I::DisclosurePlayed) => (
                S::Ringing {
                    agent: a.clone(),
                    deadline: self.deadline().unwrap_or(now),
                },
                vec![A::StartHold],
            ),
            (S::Ringing { agent: ringing, .. }, I::Accepted { agent }) if *ringing == agent => (
                S::Whispering {
                    agent: agent.clone(),
                },
                vec![A::StartHold, A::PlayWhisper { agent }],
            ),
            (S::Ringing { agent: ringing, .. }, I::Declined { agent }) if *ringing == agent => (
                S::Queued,
                vec![
                    A::StartHold,
                    A::OfferNextAgent {
                        instead_of: agent,
                        missed: false,
                    },
                ],
            ),
            (S::Whispering { agent }, I::WhisperDone) => {
                let agent = agent.clone();
                (
                    S::Merged {
                        agent: agent.clone(),
                    },
                    vec![A::Merge { agent }],
                )
            }
            (S::Whispering { agent }, I::AgentGone) => {
                let agent = agent.clone();
                (
                    S::Queued,
                    vec![
                        A::StartHold,
                        A::OfferNextAgent {
                            instead_of: agent,
                            missed: false,
                        },
                    ],
                )
            }
            (S::Merged { .. }, I::AgentGone) => (S::Ended, vec![A::End]),
            (S::Merged { agent }, I::Transfer) => {
                let from = agent.clone();
                (S::Queued, vec![A::StartHold, A::Requeue { from }])
            }
            // The agent vanished (their console did not come back in time):
            // the caller still needs a person.
            (S::Whispering { agent } | S::Merged { agent }, I::AgentLost) => {
                let agent = agent.clone();
                (
                    S::Queued,
                    vec![
                        A::StartHold,
                        A::OfferNextAgent {
                            instead_of: agent,
                            missed: false,
                        },
                    ],
                )
            }
            (S::Escalating | S::Queued | S::Ringing { .. }, I::NoAgent) => {
                (S::Callback, vec![A::OfferCallback])
            }
            (S::Callback, I::CallbackPlayed) => (S::Ended, vec![A::End]),
            // A person done with the call, or nobody to take it: back to the
            // AI (never from the whisper: that person is deciding).
            (S::Merged { .. } | S::Escalating | S::Queued | S::Ringing { .. }, I::ReturnToAi) => {
                (S::Ai, vec![A::ResumeAi])
            }
            (state, _) => (state.clone(), vec![]),
        };
        self.state = next;
        actions
    }
}

/// The routing matrix of a state.
pub fn matrix_for(state: &HandoffState) -> RoutingMatrix {
    let route = |pairs: &[(Listener, Source)]| {
        pairs.iter().fold(RoutingMatrix::silent(), |m, &(l, s)| {
            // Every pair below is allowed by construction; a refused one would
            // simply be left out (and the unit test would notice).
            m.with(l, s).unwrap_or(m)
        })
    };
    use Listener as L;
    use Source as S;
    match state {
        HandoffState::Ai => RoutingMatrix::ai_conversation(),
        // While the caller waits, the AI leg keeps listening (never speaking) so
        // its transcript can carry a spoken "I'll wait" / "call me back".
        HandoffState::Escalating => route(&[(L::Caller, S::Prompt), (L::AiAgent, S::Caller)]),
        HandoffState::Queued | HandoffState::Ringing { .. } => route(&[
            (L::Caller, S::Hold),
            (L::Caller, S::Prompt),
            (L::AiAgent, S::Caller),
        ]),
        HandoffState::Whispering { .. } => {
            route(&[(L::Caller, S::Hold), (L::HumanAgent, S::Whisper)])
        }
        HandoffState::Merged { .. } => {
            route(&[(L::Caller, S::HumanAgent), (L::HumanAgent, S::Caller)])
        }
        HandoffState::Callback => route(&[(L::Caller, S::Prompt)]),
        HandoffState::Ended => RoutingMatrix::silent(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HandoffAction as A;
    use HandoffInput as I;

    fn all_states(now: Instant) -> Vec<HandoffState> {
        vec![
            HandoffState::Ai,
            HandoffState::Escalating,
            HandoffState::Queued,
            HandoffState::Ringing {
                agent: "a".into(),
                deadline: now,
            },
            HandoffState::Whispering { agent: "a".into() },
            HandoffState::Merged { agent: "a".into() },
            HandoffState::Callback,
            HandoffState::Ended,
        ]
    }

    #[test]
    fn in_every_state_the_whisper_reaches_only_the_human_agent() {
        for state in all_states(Instant::now()) {
            let m = matrix_for(&state);
            assert!(!m.hears(Listener::Caller, Source::Whisper), "{state:?}");
            assert!(!m.hears(Listener::AiAgent, Source::Whisper), "{state:?}");
            for l in Listener::ALL {
                assert!(
                    !m.hears(l, l.own_voice()),
                    "{state:?}: {l:?} hears themself"
                );
            }
        }
        assert!(
            matrix_for(&HandoffState::Whispering { agent: "a".into() })
                .hears(Listener::HumanAgent, Source::Whisper)
        );
        assert!(
            !matrix_for(&HandoffState::Whispering { agent: "a".into() })
                .hears(Listener::HumanAgent, Source::Caller)
        );
        assert!(
            matrix_for(&HandoffState::Whispering { agent: "a".into() })
                .hears(Listener::Caller, Source::Hold)
        );
        let merged = matrix_for(&HandoffState::Merged { agent: "a".into() });
        assert!(
            merged.hears(Listener::Caller, Source::HumanAgent)
                && merged.hears(Listener::HumanAgent, Source::Caller)
        );
        assert!(
            !merged.hears(Listener::Caller, Source::AiAgent)
                && !merged.hears(Listener::AiAgent, Source::Caller)
        );
    }

    #[test]
    fn a_caller_goes_back_to_the_ai_from_a_person_or_the_queue_but_never_mid_whisper() {
        let t = Instant::now();
        for state in all_states(t) {
            let mut h = Handoff::new(HandoffTimers::default());
            h.state = state.clone();
            let actions = h.handle(I::ReturnToAi, t);
            let back = matches!(
                state,
                HandoffState::Merged { .. }
                    | HandoffState::Escalating
                    | HandoffState::Queued
                    | HandoffState::Ringing { .. }
            );
            if back {
                assert_eq!(actions, vec![A::ResumeAi], "{state:?}");
                assert_eq!(*h.state(), HandoffState::Ai, "{state:?}");
                // And the AI may escalate the call again later.
                assert_eq!(
                    h.handle(I::Escalate, t),
                    vec![A::PlayDisclosure, A::JoinQueue]
                );
            } else {
                assert!(actions.is_empty(), "{state:?}");
                assert_eq!(*h.state(), state);
            }
        }
    }

    #[test]
    fn the_happy_path_escalates_queues_rings_whispers_and_merges() {
        let t = Instant::now();
        let mut h = Handoff::new(HandoffTimers::default());
        assert_eq!(
            h.handle(I::Escalate, t),
            vec![A::PlayDisclosure, A::JoinQueue]
        );
        assert_eq!(h.handle(I::DisclosurePlayed, t), vec![A::StartHold]);
        assert_eq!(
            h.handle(
                I::Offered {
                    agent: "ann".into()
                },
                t
            ),
            vec![]
        );
        assert_eq!(h.deadline(), Some(t + Duration::from_secs(20)));
        assert_eq!(
            h.handle(
                I::Accepted {
                    agent: "ann".into()
                },
                t
            ),
            vec![
                A::StartHold,
                A::PlayWhisper {
                    agent: "ann".into()
                }
            ]
        );
        assert_eq!(
            h.handle(I::WhisperDone, t),
            vec![A::Merge {
                agent: "ann".into()
            }]
        );
        assert_eq!(
            h.state(),
            &HandoffState::Merged {
                agent: "ann".into()
            }
        );
        assert_eq!(h.handle(I::AgentGone, t), vec![A::End]);
        assert_eq!(h.state(), &HandoffState::Ended);
    }

    #[test]
    fn an_offer_during_the_disclosure_rings_at_once_and_holds_after() {
        let t = Instant::now();
        let mut h = Handoff::new(HandoffTimers::default());
        h.handle(I::Escalate, t);
        assert_eq!(
            h.handle(
                I::Offered {
                    agent: "ann".into()
                },
                t
            ),
            vec![]
        );
        assert_eq!(h.handle(I::DisclosurePlayed, t), vec![A::StartHold]);
        assert!(matches!(h.state(), HandoffState::Ringing { .. }));
    }

    #[test]
    fn a_ring_timeout_or_decline_tries_the_next_agent_then_callback() {
        let t = Instant::now();
        let mut h = Handoff::new(HandoffTimers {
            ring_timeout: Duration::from_secs(5),
        });
        h.handle(I::Escalate, t);
        h.handle(I::DisclosurePlayed, t);
        h.handle(
            I::Offered {
                agent: "ann".into(),
            },
            t,
        );
        assert!(h.poll_timeout(t + Duration::from_secs(4)).is_empty());
        assert_eq!(
            h.poll_timeout(t + Duration::from_secs(5)),
            vec![
                A::StartHold,
                A::OfferNextAgent {
                    instead_of: "ann".into(),
                    missed: true,
                }
            ]
        );
        assert_eq!(h.state(), &HandoffState::Queued);
        h.handle(
            I::Offered {
                agent: "bob".into(),
            },
            t,
        );
        // A stale decline from ann changes nothing.
        assert!(
            h.handle(
                I::Declined {
                    agent: "ann".into()
                },
                t
            )
            .is_empty()
        );
        assert_eq!(
            h.handle(
                I::Declined {
                    agent: "bob".into()
                },
                t
            ),
            vec![
                A::StartHold,
                A::OfferNextAgent {
                    instead_of: "bob".into(),
                    missed: false,
                }
            ]
        );
        assert_eq!(h.handle(I::NoAgent, t), vec![A::OfferCallback]);
        assert_eq!(h.handle(I::CallbackPlayed, t), vec![A::End]);
    }

    #[test]
    fn an_agent_dropping_during_the_whisper_sends_the_call_back_to_the_queue() {
        let t = Instant::now();
        let mut h = Handoff::new(HandoffTimers::default());
        h.handle(I::Escalate, t);
        h.handle(
            I::Offered {
                agent: "ann".into(),
            },
            t,
        );
        h.handle(
            I::Accepted {
                agent: "ann".into(),
            },
            t,
        );
        assert_eq!(
            h.handle(I::AgentGone, t),
            vec![
                A::StartHold,
                A::OfferNextAgent {
                    instead_of: "ann".into(),
                    missed: false,
                }
            ]
        );
        assert_eq!(h.state(), &HandoffState::Queued);
    }

    #[test]
    fn a_transfer_after_the_merge_queues_the_call_again_on_hold() {
        let t = Instant::now();
        let mut h = Handoff::new(HandoffTimers::default());
        h.handle(I::Escalate, t);
        h.handle(
            I::Offered {
                agent: "ann".into(),
            },
            t,
        );
        h.handle(
            I::Accepted {
                agent: "ann".into(),
            },
            t,
        );
        assert!(
            h.handle(I::Transfer, t).is_empty(),
            "not during the whisper"
        );
        h.handle(I::WhisperDone, t);
        assert_eq!(
            h.handle(I::Transfer, t),
            vec![A::StartHold, A::Requeue { from: "ann".into() }]
        );
        assert_eq!(h.state(), &HandoffState::Queued);
        // The next agent is offered, answers, hears the whisper, then the caller.
        h.handle(
            I::Offered {
                agent: "bob".into(),
            },
            t,
        );
        assert_eq!(
            h.handle(
                I::Accepted {
                    agent: "bob".into()
                },
                t
            ),
            vec![
                A::StartHold,
                A::PlayWhisper {
                    agent: "bob".into()
                }
            ]
        );
    }

    #[test]
    fn an_agent_lost_after_the_merge_sends_the_call_back_to_the_queue() {
        let t = Instant::now();
        let mut h = Handoff::new(HandoffTimers::default());
        h.handle(I::Escalate, t);
        h.handle(
            I::Offered {
                agent: "ann".into(),
            },
            t,
        );
        h.handle(
            I::Accepted {
                agent: "ann".into(),
            },
            t,
        );
        h.handle(I::WhisperDone, t);
        assert!(matches!(h.state(), HandoffState::Merged { .. }));
        assert_eq!(
            h.handle(I::AgentLost, t),
            vec![
                A::StartHold,
                A::OfferNextAgent {
                    instead_of: "ann".into(),
                    missed: false,
                }
            ]
        );
        assert_eq!(h.state(), &HandoffState::Queued);
    }

    #[test]
    fn the_caller_hanging_up_ends_everything_from_any_state() {
        let t = Instant::now();
        for state in all_states(t) {
            let mut h = Handoff {
                state: state.clone(),
                timers: HandoffTimers::default(),
            };
            let actions = h.handle(I::CallerGone, t);
            assert_eq!(h.state(), &HandoffState::Ended, "{state:?}");
            assert_eq!(actions.is_empty(), state == HandoffState::Ended);
        }
    }

    #[test]
    fn inputs_out_of_place_are_ignored() {
        let t = Instant::now();
        let mut h = Handoff::new(HandoffTimers::default());
        assert!(h.handle(I::WhisperDone, t).is_empty());
        assert!(h.handle(I::Accepted { agent: "x".into() }, t).is_empty());
        assert!(
            h.handle(I::NoAgent, t).is_empty(),
            "the AI phase does not need agents"
        );
        assert_eq!(h.state(), &HandoffState::Ai);
    }
}
