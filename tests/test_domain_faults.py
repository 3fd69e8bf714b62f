"""Faults and hostile domain files: one line, exit 2, no temporary left, nothing outside the file read."""

import errno
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from convlstm_tl.data import format as format_module
from convlstm_tl.data import writer as writer_module
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.writer import DomainWriter
from convlstm_tl.errors import DomainFileError
from tests.conftest import CLASS_NAMES, data_prep_error_line, write_tiny


def _writer(path, class_names=CLASS_NAMES):
    return DomainWriter(path, domain="d", class_names=list(class_names), provenance="t", frame_shape=(2, 1, 3, 1))


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_a_disk_fault_while_writing_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(writer_module, "_write_split", fail)
    with pytest.raises(DomainFileError, match="writing"):
        with _writer(tmp_path / "d.h5") as w:
            w.append("train", np.zeros((3, 2, 1, 3, 1)), np.array([0, 1, 2]))
    assert _leftovers(tmp_path) == []


def test_a_full_disk_at_close_leaves_no_temporary_even_if_close_raises(tmp_path, monkeypatch):
    def fail(self):
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    monkeypatch.setattr(h5py.File, "close", fail)
    with pytest.raises(DomainFileError, match="no space left on device"):
        with _writer(tmp_path / "d.h5") as w:
            for split in ("train", "val", "test"):
                w.append(split, np.zeros((3, 2, 1, 3, 1)), np.array([0, 1, 2]))
    monkeypatch.undo()
    assert _leftovers(tmp_path) == []


def test_keyboard_interrupt_inside_the_writer_removes_the_temporary(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(writer_module, "_write_split", interrupt)
    with pytest.raises(KeyboardInterrupt):
        with _writer(tmp_path / "d.h5") as w:
            w.append("train", np.zeros((3, 2, 1, 3, 1)), np.array([0, 1, 2]))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("names, message", [
    (["PEN", "PEN "], "whitespace"),
    ([" a", "b"], "whitespace"),
    (["caf\u00e9", "cafe\u0301"], "duplicates"),
    (["a", "a"], "duplicates"),
])
def test_class_names_equal_after_normalisation_are_refused_by_the_writer(tmp_path, names, message):
    with pytest.raises(DomainFileError, match=message):
        _writer(tmp_path / "d.h5", names)
    assert _leftovers(tmp_path) == []


def _spoil(path, how, tmp_path):
    with h5py.File(path, "a") as f:
        if how == "external_storage":
            raw = tmp_path / "raw.bin"
            raw.write_bytes(b"\0" * 4 * 10000)
            x = f["val/x"]
            shape = x.shape
            del f["val/x"]
            f.create_dataset("val/x", shape=shape, dtype="float32", external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
        elif how == "external_link":
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as g:
                g["x"] = f["val/x"][()]
            del f["val/x"]
            f["val/x"] = h5py.ExternalLink(str(other), "/x")
        elif how == "soft_link":
            del f["val/x"]
            f["val/x"] = h5py.SoftLink("/test/x")
        elif how == "virtual":
            x = f["val/x"][()]
            del f["val/x"]
            f["val/plain"] = x
            layout = h5py.VirtualLayout(shape=x.shape, dtype=x.dtype)
            layout[:] = h5py.VirtualSource(f["val/plain"])
            f.create_virtual_dataset("val/x", layout)
        elif how == "x_is_group":
            del f["val/x"]
            f.create_group("val/x")
        elif how == "y_is_group":
            del f["val/y"]
            f.create_group("val/y")
        elif how == "deep_class_names":
            f.attrs["class_names"] = "[" * 100000 + "]" * 100000
        elif how == "padded_class_names":
            f.attrs["class_names"] = json.dumps(["walk", "walk ", "sit"])
        elif how == "nfc_duplicate_class_names":
            f.attrs["class_names"] = json.dumps(["caf\u00e9", "cafe\u0301", "sit"])
        elif how == "class_names_not_list":
            f.attrs["class_names"] = json.dumps({"a": 1})


SPOILS = ["external_storage", "external_link", "soft_link", "virtual", "x_is_group", "y_is_group",
          "deep_class_names", "padded_class_names", "nfc_duplicate_class_names", "class_names_not_list"]


@pytest.mark.parametrize("how", SPOILS)
@pytest.mark.parametrize("command", ["check", "info"])
def test_hostile_domain_files_are_one_line(tmp_path, capsys, how, command):
    tiny = write_tiny(tmp_path / "data")
    _spoil(tiny.path, how, tmp_path)
    before = _leftovers(tiny.data_dir)
    line = data_prep_error_line([command, str(tiny.path)], capsys)
    assert str(tiny.path) in line
    assert _leftovers(tiny.data_dir) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_external_storage_on_a_fifo_is_refused_without_reading_it(tmp_path):
    tiny = write_tiny(tmp_path / "data")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with h5py.File(tiny.path, "a") as f:
        shape = f["train/x"].shape
        del f["train/x"]
        f.create_dataset("train/x", shape=shape, dtype="float32", external=[(str(fifo), 0, h5py.h5f.UNLIMITED)])
    code = ("import sys; from convlstm_tl.data.format import open_domain\n"
            "from convlstm_tl.errors import DomainFileError\n"
            f"try: open_domain({str(tiny.path)!r})\nexcept DomainFileError as e: print(e); sys.exit(2)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "external" in done.stdout


def test_the_nan_scan_reads_by_bytes(tmp_path, monkeypatch):
    tiny = write_tiny(tmp_path / "data")
    monkeypatch.setattr(format_module, "SCAN_BYTES", 1)
    reads = []
    real = format_module._check_values
    monkeypatch.setattr(format_module, "_check_values", lambda p, n, x, **k: (reads.append(len(x)), real(p, n, x, **k)))
    open_domain(tiny.path)
    assert set(reads) == {1}


def test_a_locked_file_says_it_is_being_written(tmp_path, capsys, monkeypatch):
    tiny = write_tiny(tmp_path / "data")
    def locked(*args, **kwargs):
        raise OSError(errno.EAGAIN, "Unable to synchronously open file (unable to lock file, errno = 11)")
    monkeypatch.setattr(h5py, "File", locked)
    line = data_prep_error_line(["check", str(tiny.path)], capsys)
    assert "being written by another process" in line and "rebuild" not in line


def test_info_into_a_closed_pipe_is_quiet(tmp_path):
    tiny = write_tiny(tmp_path / "data")
    reader = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    done = subprocess.run([sys.executable, "-m", "data_prep", "info", "--json", str(tiny.path)],
                          stdout=reader.stdin, stderr=subprocess.PIPE, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    reader.stdin.close()
    reader.wait()
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_sigterm_during_data_prep_leaves_no_temporary(tmp_path):
    import signal
    import time
    out = tmp_path / "out"
    code = ("import time, numpy as np\n"
            "from convlstm_tl.data.writer import DomainWriter\n"
            f"with DomainWriter({str(out / 'd.h5')!r}, domain='d', class_names=['a'], provenance='t',"
            " frame_shape=(1, 1, 1, 1)) as w:\n"
            "    while True:\n"
            "        w.append('train', np.zeros((1, 1, 1, 1, 1)), np.array([0])); time.sleep(0.05)\n")
    wrapper = ("import signal, sys\n"
               "def stop(*a): raise KeyboardInterrupt\n"
               "signal.signal(signal.SIGTERM, stop)\n"
               "try:\n    exec(sys.argv[1])\nexcept KeyboardInterrupt:\n    sys.exit(143)\n")
    proc = subprocess.Popen([sys.executable, "-c", wrapper, code], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and any(out.iterdir())):
        time.sleep(0.1)
    assert any(p.name.endswith(".tmp") for p in out.iterdir())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (143, -15) and "Traceback" not in err
    assert list(out.iterdir()) == []
