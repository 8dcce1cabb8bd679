"""Packaging for was-twisted (the twistd plugin rides along in ``twisted.plugins``)."""

from setuptools import find_packages, setup

setup(
    name="was-twisted",
    version="0.1.0",
    description="A Twisted server for Wallet Attached Storage (WAS)",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    python_requires=">=3.11",
    packages=[*find_packages(include=["was_twisted", "was_twisted.*"]), "twisted.plugins"],
    package_data={
        "twisted.plugins": ["was_plugin.py"],
        # JSON-LD contexts for offline zCap verification (see was_twisted/auth/contexts/README.md)
        "was_twisted.auth": ["contexts/*.jsonld", "contexts/LICENSE", "contexts/README.md"],
    },
    install_requires=[
        "twisted>=24.7",
        "klein>=24.8",
        "cryptography>=42",
        "base58>=2.1",
        "pyld>=2.0.3",
        "http-message-signatures>=3.0",
        "http-sf>=1.4",
        "prometheus_client>=0.20",
        "multipart>=1.3",  # multipart/form-data resource writes (streaming PushMultipartParser)
    ],
    entry_points={"console_scripts": ["was-admin = was_twisted.admin:main"]},
    extras_require={
        "s3": ["boto3>=1.35.50"],  # IfNoneMatch / IfMatch on PutObject
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "treq>=24.9",
            "wallet-attached-storage-client>=0.2",
            "httpx>=0.27",
            "moto[server]>=5.0.20",
            "boto3>=1.35.50",
            "openapi-spec-validator>=0.7",  # validates /openapi.json (tests/unit/test_openapi.py)
            "schemathesis>=4.0",  # fuzzes the real process from /openapi.json
            "matplotlib>=3.8",  # the benchmark report's charts (tests/unit/test_bench_report.py)
            "hypothesis>=6.100",  # property-based tests of the parsers (tests/unit/test_parser_properties.py)
        ],
        "dev": ["mypy>=1.10", "mypy-zope>=1.0", "ruff>=0.5"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
    ],
)
