"""dlp_studies: the paper's studies on top of dlp_lib, for the notebooks.

The paper's numbers (`paper`), per-profile grids and notebook helpers (`report`), figures with
one palette (`plots`) and, per study, the rules that turn results into verdicts. dlp_lib never
imports this package; notebooks import both.
"""
