"""The whole simulated system (carm_sim, segmentation_node, planner_node, command_node) under
malformed messages at every topic: bad images, image states and C-arm states, NaN and
out-of-limit /carm/move goals, bad /segment requests, bad Intents, odd /command/text, audio at
the wrong rate and bad /plan/view goals. Every one is refused (or handled as specified), no
node dies, and each still answers a good request afterwards. segmentation_node embeds every
frame on arrival here, so bad frames also reach its embedder."""

from __future__ import annotations

import pytest
import rclpy

from fluorosam_ros.reliability import Ledger
from fluorosam_ros.reliability.system import (BadInputs, Probe, dead_nodes, good_requests, launched_system, not_up,
                                              read_logs)

pytestmark = [pytest.mark.ros, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("robustness_logs")
    with launched_system("sim_demo.launch.yaml", log_dir, [("segmentation_node", "embed_on_arrival:=true")],
                         image_size_px=128, time_scale="10.0", speech_enabled="false") as launcher:
        probe = Probe.create("test_robustness_probe")
        try:
            reason = not_up(probe, log_dir, command_node=True)
            if reason:
                pytest.fail(reason)
            yield probe, launcher, log_dir
        finally:
            probe.close()
            rclpy.try_shutdown()


def test_malformed_messages_at_every_topic_are_refused_and_crash_nothing(system, ledger):
    probe, launcher, log_dir = system
    local = Ledger()
    BadInputs(probe, launcher, local).all()
    ledger.merge(local)
    print("\n" + local.markdown())
    assert not dead_nodes(launcher), "a node died:\n" + read_logs(log_dir)
    assert local.crashes == 0 and local.accepted == 0, "\n".join(local.problems()) + "\n" + read_logs(log_dir)
    assert local.tried >= 80


def test_every_node_still_answers_a_good_request(system):
    probe, launcher, log_dir = system
    checks = good_requests(probe)
    assert checks.ok, f"{checks.failures()}\n" + read_logs(log_dir)
    assert not dead_nodes(launcher), "a node died:\n" + read_logs(log_dir)
