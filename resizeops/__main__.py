"""Command line: ``python -m resizeops {info,bench,bench-train,demo,rf} [options]``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m resizeops", description=__doc__)
    parser.add_argument(
        "command",
        choices=["info", "bench", "bench-train", "demo", "rf"],
        help="info: build and backend report; bench: benchmarks; bench-train: training a converted model eager "
        "and under torch.compile (graphs, recompiles, breaks, time per step); demo: train a small network three "
        "ways on the CPU; "
        "rf: receptive-field analysis of a model (python -m resizeops rf torchvision:resnet50 --input 224)",
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "info":
        parser.parse_args(argv)
        import resizeops

        print(resizeops.info())
        return 0
    if command == "bench":
        from resizeops.tools import bench

        return bench.main(rest)
    if command == "bench-train":
        from resizeops.tools.bench import training

        return training.main(rest)
    if command == "demo":
        from resizeops.tools import demo

        return demo.main(rest)
    if command == "rf":
        from resizeops.tools import rf

        return rf.main(rest)
    parser.parse_args(argv)  # prints the usage error
    return 2


if __name__ == "__main__":
    sys.exit(main())
