from pathlib import Path

from setuptools import setup

PACKAGES = [
    "fluorosam_ros",
    "fluorosam_ros.geometry",
    "fluorosam_ros.twin",
    "fluorosam_ros.nodes",
    "fluorosam_ros.data",
    "fluorosam_ros.language",
    "fluorosam_ros.model",
    "fluorosam_ros.train",

]

setup(
    name="fluorosam_ros",
    version="0.1.0",
    description="Language-driven C-arm control with FluoroSAM for ROS 2",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # A plain path entry (not a namespace finder) so static tools follow it; the generated
    # interface modules live in site-packages under the same package name.
    package_dir={"": "."},
    packages=PACKAGES,
    package_data={"fluorosam_ros.language": ["*.yaml", "*.dict", "eval/*.yaml"],
                  "fluorosam_ros.evaluation": ["timm_shim/timm/*.py", "timm_shim/timm/models/*.py"]},
    entry_points={
        "console_scripts": [
            "fluorosam = fluorosam_ros.cli:main",
            "fluorosam-carm-sim = fluorosam_ros.nodes.carm_sim:main",
            "fluorosam-command-node = fluorosam_ros.nodes.command_node:main",
        ],
    },
)
