"""`fluorosam`: the command line. Sub-commands import what they need lazily, so the core ones
work without ROS."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _demo(args: list[str]) -> int:
    from fluorosam_ros.nodes.demo import main

    return main(args)


def _launch(args: list[str]) -> int:
    from fluorosam_ros.launch_runner import (
        LaunchError,
        Launcher,
        apply_overrides,
        load_launch_file,
        parse_launch_arguments,
        split_ros_args,
    )

    parser = argparse.ArgumentParser(prog="fluorosam launch",
                                     description="Run a ROS 2 YAML launch file (each node a real process). "
                                                 "Parameter overrides: --ros-args -p [node:]name:=value ...")
    parser.add_argument("file", type=Path)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="launch arguments, name:=value")
    parsed = parser.parse_args(args)
    try:
        launch_arguments, overrides = split_ros_args(parsed.arguments)
        specs = load_launch_file(parsed.file, parse_launch_arguments(launch_arguments))
        apply_overrides(specs, overrides)
    except LaunchError as error:
        print(f"fluorosam launch: {error}", file=sys.stderr)
        return 2
    launcher = Launcher(specs)
    launcher.start()
    return launcher.wait()


def _render(args: list[str]) -> int:
    import numpy as np

    from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState
    from fluorosam_ros.twin.config import TwinConfig
    from fluorosam_ros.twin.detector import to_mono8
    from fluorosam_ros.visualization import overlay

    parser = argparse.ArgumentParser(prog="fluorosam render", description="Render one view of a patient to PNG.")
    parser.add_argument("--patient-dir", default="", help="folder with ct.nii.gz [labels.nii.gz structures.csv]")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--isocenter", type=float, nargs=3, default=None, help="world LPS mm (default: CT centre)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--structure", action="append", default=[], help="outline this structure's mask")
    parser.add_argument("--out", type=Path, default=Path("render.png"))
    parsed = parser.parse_args(args)
    twin = TwinConfig(patient_dir=parsed.patient_dir)
    patient = twin.load_patient()
    renderer = twin.build_renderer(patient)
    isocenter = parsed.isocenter or patient.center_world.tolist()
    state = CArmState(CArmConfig.for_supine_patient(mirror_columns=True).with_image_size(parsed.size),
                      CArmPose(tuple(isocenter), parsed.alpha, parsed.beta))
    state.geometry.validate(state.pose)
    result = renderer.render(state, structures=parsed.structure or None)
    detector = twin.detector()
    display = detector.display(detector.intensity(result.line_integral, result.exposed), result.exposed)
    masks = [result.mask(name) for name in parsed.structure]
    overlay(to_mono8(display), state.collimation, masks, parsed.structure).save(parsed.out)
    print(f"wrote {parsed.out} ({parsed.size}x{parsed.size}); line integral range "
          f"{float(np.min(result.line_integral)):.2f}..{float(np.max(result.line_integral)):.2f}")
    return 0


def _generate(args: list[str]) -> int:
    from dataclasses import replace

    from fluorosam_ros.data.gallery import write_gallery
    from fluorosam_ros.data.generate import GeneratorConfig, generate

    defaults = GeneratorConfig()
    parser = argparse.ArgumentParser(prog="fluorosam generate",
                                     description="Generate FluoroSeg-style training data (sharded, resumable).")
    parser.add_argument("--patients", default="", help="folder of patient folders (ct.nii.gz, labels.nii.gz, "
                        "structures.csv) or one patient folder; default: the default patient")
    parser.add_argument("--out", default=defaults.out_dir)
    parser.add_argument("--images", type=int, default=defaults.images)
    parser.add_argument("--size", type=int, default=defaults.image_size_px)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--shard-size", type=int, default=defaults.shard_size)
    parser.add_argument("--shard-index", type=int, default=0, help="this job's part (Slurm array index)")
    parser.add_argument("--num-shards", type=int, default=1, help="how many parts the work is split into")
    parser.add_argument("--gallery", action="store_true", help="also write gallery.png (a contact sheet)")
    parsed = parser.parse_args(args)
    if not 0 <= parsed.shard_index < parsed.num_shards:
        parser.error("--shard-index must be in [0, --num-shards)")
    config = replace(defaults, out_dir=parsed.out, patients_dir=parsed.patients, images=parsed.images,
                     image_size_px=parsed.size, workers=parsed.workers, seed=parsed.seed,
                     shard_size=parsed.shard_size, shard_index=parsed.shard_index, num_shards=parsed.num_shards)
    card = generate(config)
    print(f"images per split: {card['images_per_split']}; data card: {Path(parsed.out) / 'DATA_CARD.md'}")
    if parsed.gallery:
        print(f"gallery: {write_gallery(Path(parsed.out), Path(parsed.out) / 'gallery.png')}")
    return 0


def _train(args: list[str]) -> int:
    from fluorosam_ros.train.trainer import main

    return main(args)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="fluorosam_cpu_small", help="registry name (fluorosam_ros.model.build)")
    parser.add_argument("--checkpoint", default=None, help="weights file (default: the bundled checkpoint)")
    parser.add_argument("--absent-threshold", type=float, default=0.5)


def _prompt_reader(wanted: bool, model):
    """The prompt reader (the structure a sentence names) for `model`, or None."""
    if not wanted:
        return None
    from fluorosam_ros.language.prompt_reader import PromptReader

    return PromptReader.for_model(model)


def _predictor(parsed: argparse.Namespace, read_prompts: bool = False):
    """`read_prompts`: free text goes through the prompt reader."""
    from fluorosam_ros.model.build import build_model, bundled_checkpoint
    from fluorosam_ros.model.predictor import FluoroSAMPredictor

    checkpoint = parsed.checkpoint or bundled_checkpoint(parsed.model)
    model = build_model(parsed.model, checkpoint)
    return FluoroSAMPredictor(model, absent_threshold=parsed.absent_threshold,
                              prompt_reader=_prompt_reader(read_prompts, model))


def _evaluate(args: list[str]) -> int:
    from fluorosam_ros.evaluation.segmentation import SegmentationEvalConfig, SegmentationEvaluator, validation_samples

    parser = argparse.ArgumentParser(prog="fluorosam evaluate", description="Evaluate FluoroSAM on held-out "
                                     "FluoroSeg images (text, 2 and 8 points; absent prompts; paraphrases) "
                                     "beside the paper and the LiteMedSAM peer.")
    _model_arguments(parser)
    parser.add_argument("--data", default="output/fluoroseg", help="dataset folder (fluorosam generate --out)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=None, help="evaluate at most this many images")
    parser.add_argument("--skip", type=int, default=0, help="start after this many images of the split (e.g. "
                        "to pick a checkpoint on images the reported evaluation does not use)")
    parser.add_argument("--prompts-per-image", type=int, default=SegmentationEvalConfig.prompts_per_image)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peer", action="store_true", help="skip LiteMedSAM")
    parser.add_argument("--no-prompt-reader", action="store_true",
                        help="skip the held-out phrasings' second reading through the prompt reader")
    parser.add_argument("--out", type=Path, default=Path("output/evaluation/segmentation.json"))
    parsed = parser.parse_args(args)
    peer = None
    if not parsed.no_peer:
        from fluorosam_ros.evaluation.litemedsam import load_litemedsam

        peer = load_litemedsam()
    samples, total = validation_samples(parsed.data, parsed.split, parsed.images, skip=parsed.skip)
    config = SegmentationEvalConfig(prompts_per_image=parsed.prompts_per_image, seed=parsed.seed)
    predictor = _predictor(parsed)
    report = SegmentationEvaluator(predictor, config, peer,
                                   prompt_reader=_prompt_reader(not parsed.no_prompt_reader, predictor.model)
                                   ).run(samples, total)
    skipped = f", after the first {parsed.skip}" if parsed.skip else ""
    print(f"\n{report.images} images{skipped}, {len(report.prompts)} prompts ({parsed.split} split of {parsed.data})\n")
    print(report.table())
    print(f"\nsaved {report.save(parsed.out)}")
    return 0


def _evaluate_control(args: list[str]) -> int:
    import math

    from fluorosam_ros.control.config import PlannerConfig
    from fluorosam_ros.evaluation.control import SEGMENTER_LABELS, ControlEvalConfig, ControlEvaluator
    from fluorosam_ros.twin.config import TwinConfig

    parser = argparse.ArgumentParser(prog="fluorosam evaluate-control", description="Evaluate positioning and "
                                     "collimation end to end (request -> localise -> move -> collimated image) "
                                     "on a held-out request set, judged by ground truth, beside IPCAI 2025.")
    _model_arguments(parser)
    parser.add_argument("--requests", type=int, default=50, help="size of the request set")
    parser.add_argument("--seed", type=int, default=0, help="the request set's seed (poses, errors, order)")
    parser.add_argument("--image-size", type=int, default=256, help="detector read-out (the model's input: 256)")
    parser.add_argument("--segmenters", default="model,truth",
                        help=f"comma-separated, from {','.join(SEGMENTER_LABELS)} (truth = ground-truth masks)")
    parser.add_argument("--localisation-mode", choices=("fused", "twin", "image"), default=None,
                        help="default: config/planner.yaml's")
    parser.add_argument("--planner-config", type=Path, default=None, help="default: config/planner.yaml")
    parser.add_argument("--error-mm", type=float, default=math.nan, help="injected twin error (default: the "
                        "planner config's twin_error, 15 mm)")
    parser.add_argument("--error-deg", type=float, default=math.nan, help="default: the planner config's, 5 deg")
    parser.add_argument("--patient-dir", default="", help="default: the default patient")
    parser.add_argument("--out", type=Path, default=Path("output/evaluation/control"),
                        help="folder for control.json (per-request records + summary) and table.md")
    parsed = parser.parse_args(args)
    segmenters = tuple(s.strip() for s in parsed.segmenters.split(",") if s.strip())
    unknown = [s for s in segmenters if s not in SEGMENTER_LABELS]
    if unknown or not segmenters:
        parser.error(f"--segmenters: unknown {unknown}; use {','.join(SEGMENTER_LABELS)}")
    planner = PlannerConfig.from_yaml(parsed.planner_config) if parsed.planner_config else PlannerConfig.from_yaml()
    config = ControlEvalConfig(requests=parsed.requests, seed=parsed.seed, image_size=parsed.image_size,
                               segmenters=segmenters, localisation_mode=parsed.localisation_mode or "",
                               translation_mm=parsed.error_mm, rotation_deg=parsed.error_deg)
    twin = TwinConfig(patient_dir=parsed.patient_dir)
    patient = twin.load_patient()
    predictor = _predictor(parsed) if "model" in segmenters else None
    evaluator = ControlEvaluator(patient, twin.build_renderer(patient), twin.detector(), config, planner, predictor)
    report = evaluator.run()
    print(f"\n{len(report.requests)} requests over {len({r.structure for r in report.requests})} structures and "
          f"{len({r.view for r in report.requests})} views, image {parsed.image_size} px, localisation "
          f"{evaluator.planner.localisation_mode}, seed {parsed.seed}\n")
    table = report.table()
    print(table)
    parsed.out.mkdir(parents=True, exist_ok=True)
    (parsed.out / "table.md").write_text(table + "\n")
    print(f"\nsaved {report.save(parsed.out / 'control.json')}")
    return 0


def _segment(args: list[str]) -> int:
    import json

    from fluorosam_ros.data.xray_io import XrayFileError, display_from_attenuation, load_xray
    from fluorosam_ros.model.predictor import PromptError
    from fluorosam_ros.visualization import contact_sheet, overlay

    parser = argparse.ArgumentParser(prog="fluorosam segment", description="Segment structures in an X-ray file "
                                     "(DICOM, PNG/JPEG, .npy or pydicom-data:<name>) and write overlays.")
    parser.add_argument("image", help="e.g. pydicom-data:RG1_UNCR.dcm (a real chest radiograph)")
    parser.add_argument("--prompt", action="append", required=True, help="text prompt; repeat for several")
    parser.add_argument("--raw-prompts", action="store_true", help="give the model each prompt as written "
                        "(default: the prompt reader passes on the canonical name of the structure it names)")
    _model_arguments(parser)
    parser.add_argument("--out-dir", type=Path, default=Path("output/segment"))
    parsed = parser.parse_args(args)
    try:
        image = load_xray(parsed.image)
    except XrayFileError as error:
        print(f"fluorosam segment: {error}", file=sys.stderr)
        return 2
    predictor = _predictor(parsed, read_prompts=not parsed.raw_prompts)
    # The model sees what our detector model shows: a percentile-windowed, bone-bright image.
    display = display_from_attenuation(image)
    predictor.set_image(display)
    parsed.out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(str(parsed.image).split(":")[-1]).stem
    pictures, summary = [], []
    for text in parsed.prompt:
        try:
            prediction = predictor.predict(text=text)
        except PromptError as error:
            print(f"  {text!r}: refused: {error}")
            continue
        found = not prediction.absent
        masks = [prediction.best_mask] if found else []
        read = "" if prediction.prompt_text == text else f" (read as {prediction.prompt_text!r})"
        caption = f"{text}{read}: " + (f"IoU~{prediction.iou_scores[0]:.2f}" if found else "not found")
        picture = overlay(display, masks=masks, caption=f"{caption} (absent {prediction.absent_score:.2f})")
        path = parsed.out_dir / f"{stem}_{'_'.join(text.split())}.png"
        picture.save(path)
        pictures.append(picture)
        summary.append({"prompt": text, "read_as": prediction.prompt_text, "found": found,
                        "absent_score": prediction.absent_score,
                        "iou_scores": prediction.iou_scores.tolist(),
                        "mask_fraction": float(prediction.best_mask.mean()), "overlay": str(path)})
        print(f"  {text!r}{read}: {'found' if found else 'NOT FOUND'}, absent score {prediction.absent_score:.2f}, "
              f"predicted IoU {prediction.iou_scores[0]:.2f}, mask {prediction.best_mask.mean():.1%} of the image -> {path}")
    if pictures:
        contact_sheet([p.resize((512, round(512 * p.height / p.width))) for p in pictures],
                      columns=min(4, len(pictures)), path=parsed.out_dir / f"{stem}_sheet.png")
    (parsed.out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=1))
    return 0


def _export_weights(args: list[str]) -> int:
    from fluorosam_ros.model.build import combine_grounding_encoder, export_weights

    parser = argparse.ArgumentParser(prog="fluorosam export-weights",
                                     description="Strip a training checkpoint to shippable weights (float16).")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--grounding-from", type=Path, default=None,
                        help="weights whose image encoder was trained for text (--tune-grounding-encoder): their "
                             "encoder, text grounding and refiner become a separate grounding encoder, the "
                             "decoder keeping this checkpoint's encoder")
    parsed = parser.parse_args(args)
    out = export_weights(parsed.checkpoint, parsed.out, half=not parsed.float32)
    if parsed.grounding_from is not None:
        out = combine_grounding_encoder(out, parsed.grounding_from, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _say(args: list[str]) -> int:
    from fluorosam_ros.nodes.say import main

    return main(args)


def _evaluate_language(args: list[str]) -> int:
    from fluorosam_ros.language.evaluate import main

    return main(args)


def _record(args: list[str]) -> int:
    from fluorosam_ros.nodes.recorder import main

    return main(args)


def _replay(args: list[str]) -> int:
    from fluorosam_ros.nodes.replayer import main

    return main(args)


def _view(args: list[str]) -> int:
    from fluorosam_ros.launch_runner import PACKAGE_SHARE, LaunchError, Launcher, load_launch_file

    layout = PACKAGE_SHARE / "config" / "foxglove_layout.json"
    parser = argparse.ArgumentParser(prog="fluorosam view", description="Live view of the running system in "
                                     "Foxglove: starts the live_view node (a Foxglove WebSocket server) beside "
                                     "the nodes already running.")
    parser.add_argument("--port", type=int, default=8765, help="WebSocket port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    parser.add_argument("--write-layout", type=Path, metavar="PATH", default=None,
                        help=f"write the Foxglove layout (as shipped in {layout.relative_to(PACKAGE_SHARE)}) and exit")
    parsed = parser.parse_args(args)
    if parsed.write_layout is not None:
        from fluorosam_ros.nodes.live_view import layout_json

        parsed.write_layout.write_text(layout_json())
        print(f"wrote {parsed.write_layout}")
        return 0
    try:
        specs = load_launch_file(PACKAGE_SHARE / "launch" / "live_view.launch.yaml",
                                 {"port": str(parsed.port), "host": parsed.host})
    except LaunchError as error:
        print(f"fluorosam view: {error}", file=sys.stderr)
        return 2
    print(f"Foxglove: Open connection -> Foxglove WebSocket -> ws://{parsed.host}:{parsed.port}\n"
          f"          Layouts -> Import from file -> {layout}", flush=True)
    launcher = Launcher(specs)
    launcher.start()
    return launcher.wait()


def _train_speech(args: list[str]) -> int:
    from fluorosam_ros.language.acoustic.train import main

    return main(args)


def _docs_interfaces(args: list[str]) -> int:
    from fluorosam_ros.interface_docs import main

    return main(args)


COMMANDS = {
    "demo": (_demo, "run the simulated C-arm demo (starts the nodes, writes PNGs)"),
    "launch": (_launch, "run a ROS 2 YAML launch file here"),
    "render": (_render, "render one view of the digital twin to a PNG"),
    "generate": (_generate, "generate synthetic training data (FluoroSeg engine)"),
    "train": (_train, "train FluoroSAM on generated shards (also under torchrun)"),
    "train-speech": (_train_speech, "train the command speech recogniser on synthetic speech (CTC)"),
    "say": (_say, "speak a command into the running system (espeak-ng -> /command/audio)"),
    "evaluate-language": (_evaluate_language, "command understanding table: text, speech, latency"),
    "evaluate": (_evaluate, "evaluate FluoroSAM on held-out images (table + JSON), beside LiteMedSAM"),
    "evaluate-control": (_evaluate_control, "positioning + collimation end to end, judged by ground truth (table + JSON)"),
    "segment": (_segment, "segment structures in an X-ray file by text prompt; writes overlays"),
    "export-weights": (_export_weights, "strip a training checkpoint to shippable weights"),
    "view": (_view, "live view in Foxglove (WebSocket server: frames, masks, 3-D C-arm, intent log)"),
    "docs-interfaces": (_docs_interfaces, "regenerate docs/interfaces.md (messages, topics, parameters)"),
    "record": (_record, "record ROS topics into an MCAP file (Foxglove, mcap, ros2 bag read it)"),
    "replay": (_replay, "publish a recorded MCAP file's messages again, as timed"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: fluorosam <command> [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<10} {help_text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    handler, _ = COMMANDS[argv[0]]
    return handler(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
