"""The limit controllers: where they settle, how they back off, their bounds, their smoothing.

Everything runs in virtual time. Convergence is measured on a real gate in
front of a service that slows down past its knee (`contended.run_saturated`);
the bands asserted are derived from each controller's documented fixed
point, not tuned to the run.
"""

from __future__ import annotations

import inspect
import math

import pytest

from prioritize import ConfigError
from prioritize.adaptive import AIMD, Gradient
from prioritize.adaptive.knobs import AIMD_KNOBS, GRADIENT_KNOBS

from .contended import run_saturated

KNEE = 32
BASE = 0.05  # seconds of service time below the knee
#: settle for 10 s, measure over the next 20
SETTLED, END = 10.0, 30.0


def gradient_fixed_point(tolerance: float, knee: int) -> float:
    """The limit L with ``L = L × gradient + sqrt(L)`` when RTT = base × L / knee (exponent 1).

    gradient = tolerance × base / RTT = tolerance × knee / L, so
    L - sqrt(L) = tolerance × knee.
    """
    root = (1 + math.sqrt(1 + 4 * tolerance * knee)) / 2
    return root * root


def probed(controller: Gradient, rtt: float = BASE, now: float = 0.0) -> float:
    """Complete the controller's first probe with no-load samples; returns the time after."""
    controller.on_sample(now, rtt, 1)  # starts the probe; its request started before it
    now += rtt / 2  # requests granted after the probe started
    for _ in range(50):
        now += rtt
        controller.on_sample(now, rtt, 1)
    assert not controller.is_probing
    return now


# -- convergence -------------------------------------------------------------


def test_aimd_settles_where_the_rtt_reaches_max_rtt() -> None:
    # RTT = base × L / knee past the knee, so RTT = max_rtt at L = knee × max_rtt / base.
    target = KNEE * 1.5
    trace = run_saturated(AIMD(max_rtt=1.5 * BASE), knee=KNEE, base=BASE, duration=END)
    held = trace.between(SETTLED, END)
    # a sawtooth: one step up per window below the target, × 0.9 above it
    assert 0.9 * target - 2 <= min(held)
    assert max(held) <= target + 2
    assert KNEE < trace.mean(SETTLED, END) < 2 * KNEE


def test_gradient_settles_at_its_fixed_point_past_the_knee() -> None:
    target = gradient_fixed_point(1.25, KNEE)  # 46.8: the RTT settles at 1.46 × base
    trace = run_saturated(Gradient(), knee=KNEE, base=BASE, duration=END)
    held = trace.between(SETTLED, END)
    assert target - 3 <= min(held)
    assert max(held) <= target + 3
    assert KNEE < trace.mean(SETTLED, END) < 2 * KNEE


def test_gradient_settles_nearer_the_knee_when_the_service_thrashes() -> None:
    # exponent 2: RTT = base × (L / knee)², so the same RTT target is reached at fewer seats
    linear = run_saturated(Gradient(), knee=KNEE, base=BASE, duration=END)
    steep = run_saturated(Gradient(), knee=KNEE, base=BASE, duration=END, exponent=2)
    assert KNEE < steep.mean(SETTLED, END) < linear.mean(SETTLED, END)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "make", [lambda: AIMD(max_rtt=1.5 * BASE), Gradient], ids=["aimd", "gradient"]
)
def test_controllers_settle_past_the_knee_with_random_service_times(
    make: type[Gradient], seed: int
) -> None:
    trace = run_saturated(make(), knee=KNEE, base=BASE, duration=END, seed=seed)
    held = trace.between(SETTLED, END)
    assert KNEE * 0.9 <= trace.mean(SETTLED, END) <= KNEE * 2
    assert min(held) >= KNEE * 0.75
    assert max(held) <= KNEE * 2.25


def test_a_higher_tolerance_settles_at_a_higher_limit() -> None:
    tight = run_saturated(Gradient(tolerance=1.0), knee=KNEE, base=BASE, duration=END)
    loose = run_saturated(Gradient(tolerance=2.0), knee=KNEE, base=BASE, duration=END)
    assert tight.mean(SETTLED, END) == pytest.approx(gradient_fixed_point(1.0, KNEE), rel=0.05)
    assert loose.mean(SETTLED, END) == pytest.approx(gradient_fixed_point(2.0, KNEE), rel=0.05)


# -- backing off on drops ------------------------------------------------------


def test_aimd_drop_cuts_the_limit_by_the_backoff_factor() -> None:
    aimd = AIMD(initial=50, window=0.0, window_samples=1)
    assert aimd.on_sample(0.0, BASE, 50, dropped=True) == 45
    assert aimd.on_sample(0.1, BASE, 50, dropped=True) == 40  # 45 × 0.9 = 40.5


def test_aimd_rtt_above_max_rtt_counts_as_a_drop() -> None:
    aimd = AIMD(initial=50, max_rtt=0.1, window=0.0, window_samples=1)
    assert aimd.on_sample(0.0, 0.2, 50) == 45


def test_aimd_backs_off_at_least_one_seat_however_small_the_limit() -> None:
    aimd = AIMD(initial=6, min_limit=1, window=0.0, window_samples=1)
    limits = [aimd.on_sample(float(i), BASE, 6, dropped=True) for i in range(6)]
    assert limits == [5, 4, 3, 2, 1, 1]


def test_gradient_drop_cuts_the_limit_by_the_backoff_factor() -> None:
    gradient = Gradient(initial=50, backoff=0.8, window=0.0, window_samples=1)
    now = probed(gradient)
    assert gradient.limit == 50
    assert gradient.on_sample(now + 1, BASE, 50, dropped=True) == 40
    assert gradient.on_sample(now + 2, BASE, 50, dropped=True) == 32


def test_many_drops_in_one_window_back_off_once() -> None:
    aimd = AIMD(initial=50, window=1.0, window_samples=10)
    aimd.on_sample(0.0, BASE, 50)  # the first window closes on its count alone
    for i in range(9):
        aimd.on_sample(0.01 * i, BASE, 50)
    assert aimd.limit == 51
    limits = [aimd.on_sample(0.1 + 0.01 * i, BASE, 50, dropped=True) for i in range(50)]
    assert set(limits) == {51}  # the window is still open
    assert aimd.on_sample(1.5, BASE, 50, dropped=True) == 45  # one cut for the whole window


def test_gradient_shrinks_when_the_service_slows_and_recovers_when_it_speeds_up() -> None:
    gradient = Gradient(initial=100, window=0.0, window_samples=1)
    now = probed(gradient)
    for _ in range(30):  # four times slower than at no load
        now += 0.04
        gradient.on_sample(now, 4 * BASE, gradient.limit)
    shrunk = gradient.limit
    assert shrunk < 20
    for _ in range(30):
        now += BASE
        gradient.on_sample(now, BASE, gradient.limit)
    assert gradient.limit > shrunk + 30


# -- bounds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: AIMD(initial=10, min_limit=5, max_limit=30, window=0.0, window_samples=1),
        lambda: Gradient(initial=10, min_limit=5, max_limit=30, window=0.0, window_samples=1),
    ],
    ids=["aimd", "gradient"],
)
def test_the_limit_stays_within_its_bounds(make: type[AIMD]) -> None:
    controller = make()
    now = probed(controller) if isinstance(controller, Gradient) else 0.0
    seen = []
    for _ in range(200):  # fast and fully used: grows
        now += BASE
        seen.append(controller.on_sample(now, BASE, controller.limit))
    assert max(seen) == 30
    assert controller.limit == 30
    for _ in range(200):  # every request dropped: shrinks
        now += BASE
        seen.append(controller.on_sample(now, BASE, controller.limit, dropped=True))
    assert min(seen) == 5 == controller.limit
    assert all(5 <= limit <= 30 for limit in seen)


def test_an_app_limited_service_does_not_grow_the_limit() -> None:
    aimd = AIMD(initial=40, window=0.0, window_samples=1)
    gradient = Gradient(initial=40, window=0.0, window_samples=1)
    now = probed(gradient)
    for _ in range(100):  # 19 in flight: less than half of 40
        now += BASE
        aimd.on_sample(now, BASE, 19)
        gradient.on_sample(now, BASE, 19)
    assert aimd.limit == 40 == gradient.limit


# -- smoothing -------------------------------------------------------------------


def test_one_outlier_moves_the_gradient_limit_by_at_most_smoothing_times_half() -> None:
    gradient = Gradient(initial=100, window=0.0, window_samples=1)
    now = probed(gradient)
    before = gradient.limit
    after = gradient.on_sample(now + 1, 1000 * BASE, 100)
    # gradient floors at 0.5: the estimate moves by at most smoothing × (0.5 L - sqrt(L))
    assert after >= math.floor(before * (1 - 0.2 * 0.5))
    assert after < before


def test_an_outlier_is_diluted_by_the_window_it_falls_in() -> None:
    gradient = Gradient(initial=100, window=0.0, window_samples=100)
    now = probed(gradient)
    for i in range(99):
        gradient.on_sample(now + i * BASE, BASE, 100)
    # the 100th sample closes the window: one slow request among 100 fast ones
    assert gradient.on_sample(now + 1.0, 10 * BASE, 100) == 100 + 2  # + 0.2 × sqrt(100)


def test_aimd_smoothing_lets_one_slow_window_pass_but_not_a_slow_trend() -> None:
    raw = AIMD(initial=50, max_rtt=0.02, window=0.0, window_samples=1)
    smooth = AIMD(initial=50, max_rtt=0.02, smoothing=0.2, window=0.0, window_samples=1)
    for controller in (raw, smooth):
        controller.on_sample(0.0, 0.01, 50)
    assert raw.on_sample(1.0, 0.05, 50) == 45  # one window 5× slower: cut
    assert smooth.on_sample(1.0, 0.05, 50) == 52  # 0.8 × 10 ms + 0.2 × 50 ms = 18 ms
    limits = [smooth.on_sample(2.0 + i, 0.05, 50) for i in range(3)]
    assert limits[-1] < 50  # a lasting slowdown gets through


# -- windows and reaction time ----------------------------------------------------


def test_aimd_grows_one_seat_per_window() -> None:
    aimd = AIMD(initial=20, window=0.125, window_samples=1)
    limits = [aimd.on_sample(i * 0.125, BASE, aimd.limit) for i in range(20)]
    assert limits == list(range(21, 41))  # 20 to 40 in 20 windows, as documented


def test_a_window_stays_open_until_it_has_enough_samples() -> None:
    aimd = AIMD(initial=20, window=0.1, window_samples=10)
    for i in range(10):
        aimd.on_sample(0.001 * i, BASE, 20)  # the first window: count alone
    assert aimd.limit == 21
    for i in range(9):  # late enough, but only 9 samples
        aimd.on_sample(10.0 + i, BASE, 21)
    assert aimd.limit == 21
    assert aimd.on_sample(20.0, BASE, 21) == 22


def test_gradient_halves_in_about_seven_windows_when_the_service_is_very_slow() -> None:
    gradient = Gradient(initial=200, max_limit=400, window=0.0, window_samples=1)
    now = probed(gradient)
    windows = 0
    while gradient.limit > 100:
        now += 1.0
        gradient.on_sample(now, 100 * BASE, gradient.limit)
        windows += 1
    assert 6 <= windows <= 8


# -- the no-load RTT probe ---------------------------------------------------------


def test_the_first_sample_starts_a_probe_at_min_limit_and_ignores_older_requests() -> None:
    gradient = Gradient(initial=30, min_limit=4, probe_samples=3)
    assert gradient.on_sample(1.0, 0.5, 30) == 4
    assert gradient.is_probing
    assert gradient.on_sample(1.2, 0.5, 30) == 4  # started at 0.7, before the probe: ignored
    for now in (1.3, 1.4):
        assert gradient.on_sample(now, 0.02, 3) == 4
    assert gradient.on_sample(1.5, 0.05, 3) == 30  # the third sample ends the probe
    assert not gradient.is_probing
    assert gradient.baseline == pytest.approx(0.03)  # the mean of 20, 20 and 50 ms


def test_a_probe_runs_again_every_probe_interval() -> None:
    gradient = Gradient(initial=30, window=0.0, window_samples=1, probe_interval=10.0)
    ended = probed(gradient)
    now = ended
    while not gradient.is_probing:
        now += BASE
        gradient.on_sample(now, 2 * BASE, gradient.limit)
    assert ended + 10.0 <= now < ended + 10.0 + 2 * BASE
    assert gradient.limit == gradient.min_limit
    now += BASE
    for _ in range(50):
        now += 2 * BASE
        gradient.on_sample(now, 2 * BASE, 4)
    assert not gradient.is_probing
    assert gradient.baseline == pytest.approx(2 * BASE)  # the service is slower now


def test_five_windows_pinned_at_min_start_a_probe() -> None:
    gradient = Gradient(initial=4, min_limit=4, window=0.0, window_samples=1)
    now = probed(gradient)
    for _ in range(5):
        assert not gradient.is_probing
        now += 1.0
        gradient.on_sample(now, 10 * BASE, 4)  # ten times slower: stays at min
    assert gradient.is_probing


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "knobs"), [(AIMD, AIMD_KNOBS), (Gradient, GRADIENT_KNOBS)])
def test_constructor_defaults_are_the_documented_knob_defaults(cls: type, knobs: tuple) -> None:
    params = inspect.signature(cls).parameters
    assert {knob.name: knob.default for knob in knobs} == {
        knob.name: params[knob.name].default for knob in knobs
    }


def test_bad_options_are_all_reported_with_what_is_accepted() -> None:
    with pytest.raises(ConfigError) as caught:
        Gradient(initial=300, tolerance=0.5, smoothing=0, headroom="log", probe_samples=0)
    assert [str(p) for p in caught.value.problems] == [
        "gradient.initial: 300 is not a whole number from min (4) to max (200)",
        "gradient.tolerance: 0.5 is not a number ≥ 1",
        "gradient.smoothing: 0 is not a number > 0 and ≤ 1",
        "gradient.headroom: 'log' is not 'sqrt' or a number ≥ 0",
        "gradient.probe_samples: 0 is not a whole number ≥ 1",
    ]
    with pytest.raises(ConfigError) as caught:
        AIMD(min_limit=0, backoff=1.0, max_rtt=-1, window_samples=True)
    assert [str(p) for p in caught.value.problems] == [
        "aimd.min: 0 is not a whole number ≥ 1",
        "aimd.backoff: 1.0 is not a number from 0.5 to 1, 1 excluded",
        "aimd.max_rtt: -1 is not a number of seconds > 0 (or inf)",
        "aimd.window_samples: true is not a whole number ≥ 1",
    ]


def test_repr_shows_the_live_limit() -> None:
    gradient = Gradient(initial=30)
    assert repr(gradient) == "<Gradient limit 30 (4-200), no-load rtt ->"
    gradient.on_sample(0.0, BASE, 1)
    assert repr(gradient) == "<Gradient limit 4 (4-200), no-load rtt -, probing>"
    assert repr(AIMD(max_rtt=0.1)) == "<AIMD limit 20 (4-200), rtt -, max_rtt 100 ms>"


def test_zero_rtts_from_a_coarse_clock_read_as_no_slowdown() -> None:
    gradient = Gradient(initial=20, window=0.0, window_samples=1, probe_samples=3)
    gradient.on_sample(0.0, 0.0, 1)
    for now in (0.5, 0.6, 0.7):  # the probe measures 0 s: the clock did not tick
        gradient.on_sample(now, 0.0, 1)
    assert gradient.baseline == 0.0
    for i in range(5):
        gradient.on_sample(1.0 + i, 0.0, gradient.limit)
    grown = gradient.limit
    assert grown > 20
    assert gradient.on_sample(7.0, 0.015, grown) < grown  # a tick is infinitely slower than 0
