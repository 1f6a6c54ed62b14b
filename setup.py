from setuptools import find_packages, setup

setup(
    name="minidl",
    version="0.1.0",
    description="A deep-learning framework written from scratch on NumPy (CPU) and CuPy (GPU)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minidl", "minidl.*"]),
    package_data={"minidl": ["data/*.npz", "data/README.md"]},
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "tqdm>=4.60"],
    extras_require={
        "gpu": ["cupy>=13"],
        "plot": ["matplotlib>=3.6"],
        "tensorboard": ["tensorboardX>=2.6", "tensorboard>=2.12"],
        "dev": ["pytest>=7", "hypothesis>=6", "matplotlib>=3.6", "ruff>=0.4", "safetensors>=0.4",
                "tensorboardX>=2.6", "tensorboard>=2.12"],
    },
    entry_points={"console_scripts": ["minidl=minidl.cli:main"]},
    license="MIT",
)
