"""The study (``make reproduce``) on Hydra's launchers, and what is made of its runs."""
