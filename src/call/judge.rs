//! The optional LLM judge's I/O half: sends a [`JudgeRequest`] to an
//! OpenAI-compatible chat-completions endpoint within the time budget and reads
//! the verdicts. Never on the audio path (the insight task spawns it), never
//! required: a late, failed or malformed answer leaves the heads' reading.

use crate::brief::summary::{SummaryError, chat_completion};
use crate::monitor::PolicyConfig;
use crate::monitor::heads::Label;
use crate::monitor::judge::{JudgeRequest, chat_body, parse_answer};
use std::time::Duration;

/// A configured judge.
#[derive(Debug, Clone)]
pub struct LlmJudge {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: String,
    budget: Duration,
}

impl LlmJudge {
    /// The judge `[monitor] judge_url` names, if any.
    pub fn from_config(config: &PolicyConfig) -> Result<Option<LlmJudge>, SummaryError> {
        if config.judge_url.trim().is_empty() {
            return Ok(None);
        }
        let budget = Duration::from_millis(config.judge_budget_ms.max(1));
        let client = reqwest::Client::builder()
            .timeout(budget)
            .build()
            .map_err(|e| SummaryError::Http(e.to_string()))?;
        Ok(Some(LlmJudge {
            client,
            url: config.judge_url.clone(),
            model: config.judge_model.clone(),
            api_key: config.judge_api_key.clone(),
            budget,
        }))
    }

    /// Asks about one turn; the verdict for every candidate label, or why not.
    pub async fn ask(&self, req: &JudgeRequest) -> Result<Vec<(Label, bool)>, String> {
        let body = chat_body(&self.model, req);
        let content = chat_completion(&self.client, &self.url, &self.api_key, self.budget, &body)
            .await
            .map_err(|e| e.to_string())?;
        parse_answer(&content, &req.candidates).map_err(|e| e.to_string())
    }
}
