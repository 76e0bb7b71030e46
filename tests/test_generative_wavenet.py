"""wavenet-fsdd: μ-law against its formula, causality, the receptive field (formula = gradient), shapes and
parameter count, fast generation = naive generation, learning on real spoken digits, `dldojo sample` writing WAV
files, audio in the report (`RunContext.save_audio`), and the FSDD loader (layout, split, hostile WAV files)."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from dldojo.cli import main
from dldojo.data import audio, store
from dldojo.engine.errors import DojoError
from dldojo.engine.launch import run_experiment
from dldojo.generative import wavenet as W


def config(**overrides) -> W.WaveNetConfig:
    small = {"residual_channels": 8, "gate_channels": 6, "skip_channels": 12, "layers_per_stack": 4, "stacks": 2,
             "generate_seconds": 0.05}
    return W.WaveNetConfig(**{**small, **overrides})


def model(seed: int = 0, **overrides) -> W.WaveNet:
    torch.manual_seed(seed)
    return W.WaveNet(config(**overrides)).eval()


# ----- μ-law -----

def test_mu_law_known_values_and_round_trip():
    mu = 255
    assert W.mu_law_encode(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    assert W.SILENCE == 128
    assert W.mu_law_decode(torch.tensor([0, 255])).tolist() == [-1.0, 1.0]
    for x in (0.5, -0.25, 0.01, 1e-4, -0.9):  # the formula written out with the math module
        f = math.copysign(math.log(1 + mu * abs(x)) / math.log(1 + mu), x)
        assert int(W.mu_law_encode(torch.tensor([x]))) == math.floor((f + 1) / 2 * mu + 0.5), x
    classes = torch.arange(256)
    assert torch.equal(W.mu_law_encode(W.mu_law_decode(classes)), classes)  # every class survives decode → encode
    x = torch.linspace(-1, 1, 100_001, dtype=torch.float64)
    error = (W.mu_law_compand(W.mu_law_decode(W.mu_law_encode(x)).double()) - W.mu_law_compand(x)).abs()
    assert float(error.max()) <= 1 / mu + 1e-6  # within half a level (2/μ apart) of F(x)
    torch.testing.assert_close(W.mu_law_expand(W.mu_law_compand(x)), x, rtol=0, atol=1e-12)
    steps = W.mu_law_decode(classes).diff()
    assert float(steps[0]) > 100 * float(steps[127])  # coarse levels near ±1, fine ones near 0


def test_mu_law_companding_equals_librosa_if_installed():
    librosa = pytest.importorskip("librosa")
    x = np.linspace(-1, 1, 2001)
    np.testing.assert_allclose(W.mu_law_compand(torch.from_numpy(x)).numpy(),
                               librosa.mu_compress(x, mu=255, quantize=False), rtol=0, atol=1e-12)
    np.testing.assert_allclose(W.mu_law_expand(torch.from_numpy(x)).numpy(),
                               librosa.mu_expand(x, mu=255, quantize=False), rtol=0, atol=1e-12)


# ----- the network -----

def test_causal_convolution_never_looks_ahead():
    net = model()
    x = torch.randint(256, (2, 120), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([3, 8])
    logits = net(x, y)
    for t0 in (0, 37, 119):
        changed = x.clone()
        changed[:, t0] = (changed[:, t0] + 100) % 256
        after = net(changed, y)
        assert torch.equal(after[:, :, :t0], logits[:, :, :t0]), t0  # the past is bit-for-bit the same
        assert not torch.equal(after[:, :, t0], logits[:, :, t0])      # the present sees the change
    assert not torch.equal(net(x, torch.tensor([4, 8]))[0], logits[0])  # the digit conditions every output


@pytest.mark.parametrize("layers,stacks", [(3, 1), (4, 2), (10, 2)])
def test_receptive_field_formula_equals_the_gradient(layers, stacks):
    cfg = config(layers_per_stack=layers, stacks=stacks, residual_channels=4, gate_channels=4, skip_channels=4)
    dilations = W.dilations(cfg)
    assert dilations == [2 ** i for i in range(layers)] * stacks
    field = W.receptive_field(dilations)
    assert field == 2 + stacks * (2 ** layers - 1)  # the input convolution's 2 samples + Σ_k d_k
    torch.manual_seed(0)
    net = W.WaveNet(cfg)
    assert net.receptive_field == field
    measured, gradient = W.measured_receptive_field(net)
    assert measured == field
    assert (gradient[:field] > 0).all() and not gradient[field:].any()
    if (layers, stacks) == (10, 2):
        assert field == 2048  # 256 ms at 8 kHz


def test_shapes_and_parameter_count():
    net = W.WaveNet(W.WaveNetConfig())  # the full preset's network
    R, G, S, L = 32, 32, 128, 20
    per_layer = (R * 2 * G * 2 + 2 * G) + 10 * 2 * G + (G * R + R) + (G * S + S)  # dilated, condition, residual, skip
    expected = (256 * R * 2 + R) + L * per_layer + (S * S + S) + (S * 256 + 256)
    assert sum(p.numel() for p in net.parameters()) == expected == 267_552
    assert len(net.layers) == L and [layer.dilation for layer in net.layers[:11]] == [1, 2, 4, 8, 16, 32, 64, 128,
                                                                                       256, 512, 1]
    small = model()
    logits = small(torch.randint(256, (3, 50)), torch.tensor([0, 5, 9]))
    assert logits.shape == (3, 256, 50)


def test_training_windows_predict_each_sample_from_the_receptive_field_before_it():
    rf = 5
    x = torch.tensor([10, 11, 12, 13, 14, 15, 16], dtype=torch.uint8)
    inputs, targets = W.make_batch([x, x[:3]], [2, 0], [4, 3], rf)
    assert inputs.shape == (2, rf - 1 + 4) and targets.shape == (2, 4)
    # row 0 predicts x[2:6] = 12..15; the input window is (silence × 5, x)[2 : 2 + 4 + 4]
    assert inputs[0].tolist() == [128, 128, 128, 10, 11, 12, 13, 14] and targets[0].tolist() == [12, 13, 14, 15]
    assert inputs[1].tolist() == [128] * 5 + [10, 11, 128] and targets[1].tolist() == [10, 11, 12, -100]
    # the output at input position rf − 1 + i predicts targets[i] and sees exactly the rf inputs before it
    for i in range(4):
        seen = inputs[0, i:rf + i].tolist()
        assert seen == ([128] * 5 + x.tolist())[2 + i:2 + i + rf]


# ----- generation -----

def test_sampling_inverts_the_softmax_cdf():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5] + [0.0] * 253])).expand(4, 256)
    assert W.sample_class(logits, torch.tensor([0.0, 0.1, 0.25, 0.6])).tolist() == [0, 0, 1, 2]
    draws = W.sample_class(torch.zeros(20000, 256), torch.rand(20000, generator=torch.Generator().manual_seed(0)))
    assert draws.min() >= 0 and draws.max() <= 255 and abs(draws.double().mean().item() - 127.5) < 2


def test_fast_generation_equals_naive_generation():
    net = model(seed=3)
    y = torch.tensor([0, 7, 2])
    uniforms = torch.rand((3, 150), generator=torch.Generator().manual_seed(4))
    naive = W.generate_naive(net, y, uniforms)
    fast = W.generate_fast(net, y, uniforms)
    assert naive.shape == (3, 150)
    assert torch.equal(fast, naive)
    assert len(set(naive[0].tolist())) > 20  # a random network's samples move around: the test is not trivial
    other = W.generate_fast(net, y, torch.rand((3, 150), generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(other, fast)
    waveforms, rate = W.sample_audio(net, 4, label=2, generator=torch.Generator().manual_seed(0))
    assert rate == 8000 and waveforms.shape == (4, net.sample_length) and waveforms.abs().max() <= 1
    with pytest.raises(DojoError, match="digit 0..9"):
        W.sample_audio(net, 1, label=10, generator=torch.Generator())


# ----- learning on real data -----

def test_learns_on_a_real_fsdd_slice(real_data):
    """100 Adam steps on 100 training recordings (seeds 0 and 1 measured 6.27 and 6.22 bits; the unigram
    baseline is 7.38): the test NLL falls well below the 8 bits of a uniform distribution and below what the
    class frequencies alone give."""
    sets = ["residual_channels=16", "gate_channels=16", "skip_channels=32", "layers_per_stack=8", "stacks=1",
            "steps=100", "batch_size=4", "max_target_samples=1024", "lr=0.01", "train_recordings=100",
            "test_recordings=20", "eval_every=0", "generate_seconds=0.05", "naive_samples=20"]
    metrics = run_experiment("wavenet-fsdd", preset="smoke", sets=sets, seed=0, quiet=True, report=False)["metrics"]
    assert metrics["test_nll_bits"] < 6.7, metrics
    assert metrics["test_nll_bits"] < metrics["test_nll_bits_unigram"] - 0.7, metrics


# ----- dldojo sample, the report's audio -----

@pytest.fixture
def smoke_wavenet(synthetic_data):
    return run_experiment("wavenet-fsdd", preset="smoke", seed=0, quiet=True)["run_dir"]


def test_sample_command_writes_wav_files_and_the_report_plays_them(smoke_wavenet, tmp_path, capsys):
    import dldojo

    run_dir = Path(smoke_wavenet)
    page = (run_dir / "report.html").read_text()
    assert page.count("<audio controls") == 20  # a generated and a real clip per digit
    assert "digit3 generated" in page and "Generated audio" in page
    out = tmp_path / "clips"
    assert main(["sample", smoke_wavenet, "-n", "3", "--label", "4", "--seed", "2", "--out", str(out)]) == 0
    assert "3 audio samples of class 4" in capsys.readouterr().out
    paths = sorted(out.glob("*.wav"))
    assert len(paths) == 3
    clips = [audio.read_wav(p) for p in paths]
    assert all(len(c) == 400 for c in clips)  # smoke: 0.05 s at 8 kHz
    assert main(["sample", smoke_wavenet]) == 0  # default: 10 clips, one per digit
    assert len(list((run_dir / "samples" / "audio-n10-seed0").glob("*.wav"))) == 10
    r = dldojo.load(smoke_wavenet)
    a, b, c = r.sample(n=2, seed=5), r.sample(n=2, seed=5), r.sample(n=2, seed=6)
    assert torch.equal(a.waveforms, b.waveforms) and not torch.equal(a.waveforms, c.waveforms)
    assert "2 audio samples" in repr(a) and a._repr_html_().count("<audio controls") == 2

    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
        return err

    assert "must name a folder" in error(["sample", smoke_wavenet, "--out", str(tmp_path / "x.png")])
    assert "digit 0..9" in error(["sample", smoke_wavenet, "--label", "12"])
    assert "n must be an integer" in error(["sample", smoke_wavenet, "-n", "0"])


def test_save_audio_writes_pcm_that_the_report_embeds(tmp_path):
    from dldojo.engine.report import build_report
    from dldojo.engine.run import RunContext, write_wav

    run_dir = tmp_path / "vae-mnist" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"experiment": "vae-mnist", "preset": "smoke", "seed": 0,
                                                     "config": {}}))
    ctx = RunContext(run_dir, "vae-mnist", "smoke", 0, quiet=True)
    tone = np.sin(2 * np.pi * 440 * np.arange(800) / 8000)
    path = ctx.save_audio("tones/a440", tone, 8000)
    ctx.save_audio("click", np.array([0, 32767, -32768, 0], dtype=np.int16), 16000)
    assert path == run_dir / "audio" / "tones" / "a440.wav"
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (1, 2, 8000, 800)
        samples = np.frombuffer(wav.readframes(800), dtype="<i2")
    np.testing.assert_array_equal(samples, np.round(tone * 32767).astype(np.int16))
    page = build_report(run_dir).read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page)[:2] == ["Click", "Tones"]
    players = re.findall(r"<audio controls[^>]*src='data:audio/wav;base64,([^']+)'", page)
    assert len(players) == 2
    assert base64.b64decode(players[1]) == path.read_bytes()  # sections sorted: click, then tones
    with pytest.raises(DojoError, match="one non-empty channel"):
        write_wav(tmp_path / "x.wav", np.zeros((2, 10)), 8000)
    with pytest.raises(DojoError, match="sample rate"):
        write_wav(tmp_path / "x.wav", np.zeros(10), 0)


# ----- the FSDD loader and its verification -----

def test_fsdd_fixture_layout_split_and_order(synthetic_data):
    assert store.status("fsdd").state == "fixture"
    train, test = audio.load("fsdd")
    assert len(train) == 40 and len(test) == 20  # 10 digits × 2 speakers × (2 train indices, 1 test index)
    assert set(test.indices) == {0} and set(train.indices) == {5, 6}
    assert test.names[:3] == ("0_alice_0.wav", "0_bob_0.wav", "1_alice_0.wav")  # (index, digit, speaker) order
    head = train.head(20)
    assert set(head.indices) == {5} and sorted(set(head.digits)) == list(range(10))
    assert all(w.dtype == np.int16 and 1200 <= len(w) < 2000 for w in train.waveforms)


def test_real_fsdd_verifies_by_its_tree_digest(real_data):
    status = store.status("fsdd")
    assert status.state == "ok", status.detail
    train, test = audio.load("fsdd")
    assert (len(train), len(test)) == (2700, 300)
    assert test.names[:2] == ("0_george_0.wav", "0_jackson_0.wav")
    assert np.bincount(test.digits).tolist() == [30] * 10 and set(train.indices) == set(range(5, 50))


def test_a_changed_recording_fails_verification(tmp_path, monkeypatch):
    folder = audio.make_fsdd_fixture(tmp_path)
    (folder / store.FIXTURE_MANIFEST).unlink()  # now it claims to be the real dataset
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    status = store.status("fsdd")
    assert status.state == "corrupt" and "recordings/ does not match its registered tree digest" in status.detail
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DojoError, match="free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"):
        store.locate("fsdd")


def _wav_bytes(channels: int = 1, width: int = 2, rate: int = 8000, frames: int = 100) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(b"\x01" * (frames * channels * width))
    return buf.getvalue()


@pytest.mark.parametrize("data,expected", [
    (b"", "not a readable PCM WAV"),
    (b"this is not audio at all" * 10, "not a readable PCM WAV"),
    (_wav_bytes(channels=2), "2 channel(s), 16-bit, 8000 Hz; expected mono 16-bit"),
    (_wav_bytes(width=1), "8-bit"),
    (_wav_bytes(rate=16000), "16000 Hz"),
    (_wav_bytes(frames=0), "declares 0 frames"),
    (_wav_bytes()[:-50], "declares 100 frames"),          # truncated: fewer bytes than the header says
    (_wav_bytes()[:-10], "95 of the 100 frames"),         # truncated by less than the header's size
    (_wav_bytes()[:30], "not a readable PCM WAV"),         # cut inside the header
])
def test_a_hostile_wav_is_a_one_line_error(tmp_path, data, expected):
    path = tmp_path / "3_eve_0.wav"
    path.write_bytes(data)
    with pytest.raises(DojoError) as err:
        audio.read_wav(path)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message, message


def test_a_corrupt_recording_in_the_dataset_stops_loading_with_one_line(tmp_path, monkeypatch, capsys):
    folder = audio.make_fsdd_fixture(tmp_path)
    (folder / "recordings" / "7_bob_5.wav").write_bytes(_wav_bytes()[:-60])
    store.write_manifest(folder)  # the manifest vouches for the damaged file: verification passes, reading fails
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    monkeypatch.setenv(store.FIXTURES_ENV, "1")
    monkeypatch.setenv("DLDOJO_RUNS", str(tmp_path / "runs"))
    with pytest.raises(DojoError, match="7_bob_5.wav.*truncated"):
        audio.load("fsdd")
    assert main(["run", "wavenet-fsdd", "--preset", "smoke", "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "7_bob_5.wav" in err and "\n" not in err and "Traceback" not in err
