//! The order of the offer/answer exchange, without I/O.
//!
//! The offer leaves for signaling as soon as it exists, and our local description is applied
//! while it travels; a node on a fast link can answer before that has finished, and an answer
//! applied then is refused ("invalid proposed signaling state transition"). [`Negotiation`]
//! holds the answer until the local description is in place, and the node's trickled
//! candidates until the answer is: whatever order the events come in, the steps come out in
//! the one order the peer connection accepts.

use webrtc::peer_connection::RTCIceCandidateInit;

/// What the session must do next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Apply the node's answer as the remote description, then report
    /// [`Negotiation::answer_applied`].
    ApplyAnswer(String),
    /// Add one of the node's candidates.
    AddCandidate(RTCIceCandidateInit),
}

/// Where the exchange is.
#[derive(Debug, Default)]
pub(crate) struct Negotiation {
    local_applied: bool,
    answer: Option<String>,
    answer_applied: bool,
    early: Vec<RTCIceCandidateInit>,
}

impl Negotiation {
    /// Our offer is now our local description.
    pub fn local_applied(&mut self) -> Vec<Step> {
        self.local_applied = true;
        self.answer
            .take()
            .map(Step::ApplyAnswer)
            .into_iter()
            .collect()
    }

    /// The node's answer arrived. A second answer is ignored.
    pub fn answer(&mut self, sdp: String) -> Vec<Step> {
        if self.answer_applied || self.answer.is_some() {
            return Vec::new();
        }
        if self.local_applied {
            vec![Step::ApplyAnswer(sdp)]
        } else {
            self.answer = Some(sdp);
            Vec::new()
        }
    }

    /// The answer is now the remote description: the candidates that waited for it follow.
    pub fn answer_applied(&mut self) -> Vec<Step> {
        self.answer_applied = true;
        self.early.drain(..).map(Step::AddCandidate).collect()
    }

    /// One of the node's candidates arrived.
    pub fn candidate(&mut self, candidate: RTCIceCandidateInit) -> Vec<Step> {
        if self.answer_applied {
            vec![Step::AddCandidate(candidate)]
        } else {
            self.early.push(candidate);
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(s: &str) -> RTCIceCandidateInit {
        RTCIceCandidateInit {
            candidate: s.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn an_answer_before_the_local_description_waits_for_it() {
        let mut n = Negotiation::default();
        // The node is faster than our own peer connection: answer and candidates first.
        assert_eq!(n.answer("answer".into()), vec![]);
        assert_eq!(n.candidate(cand("c1")), vec![]);
        assert_eq!(n.local_applied(), vec![Step::ApplyAnswer("answer".into())]);
        assert_eq!(
            n.candidate(cand("c2")),
            vec![],
            "still no remote description"
        );
        assert_eq!(
            n.answer_applied(),
            vec![
                Step::AddCandidate(cand("c1")),
                Step::AddCandidate(cand("c2"))
            ]
        );
        assert_eq!(
            n.candidate(cand("c3")),
            vec![Step::AddCandidate(cand("c3"))]
        );
    }

    #[test]
    fn an_answer_after_the_local_description_is_applied_at_once() {
        let mut n = Negotiation::default();
        assert_eq!(n.local_applied(), vec![]);
        assert_eq!(n.answer("a".into()), vec![Step::ApplyAnswer("a".into())]);
        assert_eq!(n.answer_applied(), vec![]);
        assert_eq!(n.answer("again".into()), vec![], "one answer per offer");
    }
}
