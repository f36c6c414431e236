"""A stand-in for Colab's `google.colab` package, for tests that run the notebooks as Colab would (see
tests/test_colab_emulation.py): Drive is a local folder named by TITLEGEN_FAKE_DRIVE."""
