"""What an interrupted `lightft sweep` keeps on --resume (lightft.sweep.finished_methods); the sweep end to end
is in test_cli.py."""

import json

ROW = {"method": "lora", "learning_rate": 1e-3, "status": "ok", "accuracy": 0.9, "macro_f1": 0.89,
       "trainable_params": 10, "total_params": 100, "adapter_bytes": 1000, "train_seconds": 1.5,
       "docs_per_second": 10.0, "best_epoch": 1}


def method_folder(out, name, marker=None, summary=None):
    folder = out / "methods" / name
    folder.mkdir(parents=True)
    if marker is not None:
        (folder / "run.json").write_text(marker if isinstance(marker, str) else json.dumps(marker))
    if summary is not None:
        (folder / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return folder


def test_only_complete_method_folders_with_their_row_are_kept(tmp_path):
    from lightft.sweep import finished_methods

    method_folder(tmp_path, "lora", {"status": "complete"}, {"leaderboard_row": ROW})
    method_folder(tmp_path, "ia3", {"status": "complete"}, {"leaderboard_row": ROW | {"method": "ia3"}})
    method_folder(tmp_path, "loha", None, {"leaderboard_row": ROW | {"method": "loha"}})  # killed before run.json
    method_folder(tmp_path, "dora", {"status": "complete"}, {"leaderboard_row": {"method": "dora", "status": "ok"}})
    method_folder(tmp_path, "vera", "{broken", {"leaderboard_row": ROW | {"method": "vera"}})
    method_folder(tmp_path, "lokr", {"status": "complete"}, "[1, 2]")
    method_folder(tmp_path, "full", {"status": "complete"}, {"leaderboard_row": ROW})  # another method's row
    assert sorted(finished_methods(tmp_path)) == ["ia3", "lora"]
    assert finished_methods(tmp_path)["lora"] == ROW
    assert finished_methods(tmp_path / "nowhere") == {}
