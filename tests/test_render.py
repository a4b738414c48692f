"""Off-screen rendering of the endovascular scene (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.render.scene import DEVICE_COLOR, render_session_image
from surgsim.session.session import Session

pytestmark = pytest.mark.render


def test_scene_shows_anatomy_and_device(default_scenario, default_case):
    session = Session(default_scenario, default_case)
    session.apply("advance", 0.05)
    session.step(1000)
    image = render_session_image(session, size=(480, 640))
    assert image.shape[:2] == (640, 480)
    assert image.std() > 10, "blank image"
    rgb = image[..., :3].astype(float)
    device = np.array(DEVICE_COLOR) * 255
    # some pixels are the device's blue (shaded: allow a wide margin)
    blue = (rgb[..., 2] > 120) & (rgb[..., 2] > rgb[..., 0] + 60) & (rgb[..., 2] > rgb[..., 1] + 40)
    assert blue.sum() > 50, f"device not visible ({blue.sum()} bluish pixels; colour {device})"
    reddish = (rgb[..., 0] > rgb[..., 2] + 40) & (rgb[..., 0] > 80)
    assert reddish.sum() > 500, "anatomy not visible"
