//! Weights files: what `twa train` saves loads back into the same parameter table
//! exactly, and files that do not fit the model are refused with a clear message.

use std::collections::HashMap;
use twa::nn::{Model, ModelConfig};
use twa::run::model_file::{load_table, save};

#[test]
fn weights_round_trip_and_mismatches_are_refused() {
    let dir = std::env::temp_dir().join(format!("twa-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = Model::mlp(
        &ModelConfig {
            hidden: vec![7, 5],
            batchnorm: true,
            ..Default::default()
        },
        12,
        3,
    );
    let params = model.init_params(9);
    let mut state = model.init_state();
    state
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v += i as f32 * 0.25);
    let path = dir.join("model.safetensors");
    save(&path, &model, &params, &state, HashMap::new()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(load_table(&path, &bytes, &model.params).unwrap(), params);
    let loaded_state = load_table(&path, &bytes, &model.state).unwrap();
    for e in &model.state.entries {
        assert_eq!(loaded_state[e.range()], state[e.range()], "{}", e.name);
    }
    let other = Model::mlp(
        &ModelConfig {
            hidden: vec![8, 5],
            batchnorm: true,
            ..Default::default()
        },
        12,
        3,
    );
    let err = load_table(&path, &bytes, &other.params)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0.weight") && err.contains("[8, 12]"), "{err}");
    let err = load_table(&path, b"not safetensors", &model.params)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a safetensors file"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left behind");
}
