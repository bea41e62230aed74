//! The `smtp` adapter (not yet implemented in this build).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Provider, ProviderContext, factory::BuildError};

pub fn build(
    _config: &Map<String, Value>,
    _ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Err(BuildError(
        "the smtp adapter is not available in this build".into(),
    ))
}
