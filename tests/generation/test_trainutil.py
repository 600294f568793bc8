"""Run bookkeeping shared by the trainers: the loss log across a kill and resume, and checkpoint folders."""

import pytest

from mvgen.trainutil import LossLog, checkpoint_dirs, read_log, save_checkpoint


def test_loss_log_resume_drops_rows_the_killed_run_logged_after_its_checkpoint(tmp_path):
    path = tmp_path / "loss.csv"
    log = LossLog(path, ["loss"])
    for step in (10, 20, 30):
        log.log(step, loss=1.0 / step)
    rows = read_log(path)
    assert [r["step"] for r in rows] == ["10", "20", "30"]
    # Killed after logging step 30 but the last checkpoint was step 20: resuming from 20 redoes 30.
    resumed = LossLog(path, ["loss"], start_step=20)
    resumed.log(30, loss=0.5)
    rows = read_log(path)
    assert [r["step"] for r in rows] == ["10", "20", "30"]
    assert float(rows[-1]["loss"]) == 0.5
    assert float(rows[-1]["time"]) >= float(rows[1]["time"])  # training time continues, never restarts at 0


def test_loss_log_fresh_run_starts_empty(tmp_path):
    path = tmp_path / "loss.csv"
    LossLog(path, ["loss", "lr"]).log(1, loss=0.25, lr=1e-3)
    assert read_log(path) == [{"step": "1", "time": read_log(path)[0]["time"], "loss": "0.25", "lr": "0.001"}]


def test_save_checkpoint_is_atomic_and_keeps_the_newest(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, lambda d: (d / "w.txt").write_text("x"))
    assert [c.name for c in checkpoint_dirs(tmp_path)] == ["checkpoint-2", "checkpoint-3"]

    def crash(d):
        (d / "w.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path, 4, crash)
    assert [c.name for c in checkpoint_dirs(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]  # no leftovers


def test_a_second_run_in_one_process_may_change_the_precision():
    """accelerate keeps one state per process; a run after one with another precision still starts (the VAE in
    fp32, then the transformer under bf16 in one session, as the test suite does on a CPU with native bf16)."""
    from accelerate.state import AcceleratorState

    from mvgen.trainutil import make_accelerator

    AcceleratorState._reset_state(True)
    try:
        assert make_accelerator("no", cpu=True).mixed_precision == "no"
        assert make_accelerator("bf16", cpu=True).mixed_precision == "bf16"
        assert make_accelerator("bf16", cpu=True).mixed_precision == "bf16"  # the same settings: kept, no reset
        assert make_accelerator("no", cpu=True).mixed_precision == "no"
    finally:
        AcceleratorState._reset_state(True)
