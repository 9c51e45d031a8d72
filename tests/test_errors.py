"""rotnet's exceptions and warnings (rotnet.errors): suggestions for a mistyped name, warnings said once, and
positions and signals carried as the user counts them."""

import signal
import warnings

from rotnet.errors import Interrupted, NonFiniteLoss, RotnetError, unknown, warn_once


def test_an_unknown_name_suggests_the_closest_choice_and_lists_them_all():
    e = unknown("experiment", "rotaton", ["rotation", "full-from-random"])
    assert isinstance(e, RotnetError)
    assert str(e) == "unknown experiment 'rotaton'; did you mean rotation? choose one of rotation, full-from-random"
    assert "did you mean" not in str(unknown("arch", "zzz", ["resnet18"]))


def test_a_warning_is_said_once_per_key():
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for key in ["errors-test-a", "errors-test-a", "errors-test-b"]:
            warn_once(key, f"about {key}")
    assert [str(w.message) for w in said] == ["about errors-test-a", "about errors-test-b"]


def test_a_non_finite_loss_is_named_at_its_epoch_and_step_counted_from_one():
    e = NonFiniteLoss(epoch=0, step=4)
    assert str(e) == "non-finite loss at epoch 1, step 5" and (e.epoch, e.step) == (0, 4)


def test_an_interruption_without_a_signal_is_a_ctrl_c():
    assert Interrupted("stopped", signum=0).signum == signal.SIGINT
    assert Interrupted("stopped", signum=signal.SIGTERM, saved=False).saved is False
