//! The system prompt: `agent.system_prompt_file` when it exists, else the built-in one.

const BUILT_IN: &str = include_str!("../../config/system_prompt.md");

/// The system prompt's text, with `{{user_id}}` and `{{current_time}}` still to fill in.
#[derive(Clone, Debug)]
pub struct PromptTemplate(String);

impl PromptTemplate {
    /// The file at `path`, or the built-in prompt when it is missing or blank.
    #[must_use]
    pub fn load(path: &str) -> Self {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Self(text),
            _ => Self(BUILT_IN.to_owned()),
        }
    }

    /// The prompt for one turn of `user_id` at `now`.
    #[must_use]
    pub fn render(&self, user_id: &str, now: &chrono::DateTime<chrono::Utc>) -> String {
        let mut prompt = self.0.replace("{{user_id}}", user_id).replace(
            "{{current_time}}",
            &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        // Held for the whole turn (a streamed one may take minutes): not the doubling
        // slack `replace` grew it with.
        prompt.shrink_to_fit();
        prompt
    }
}
