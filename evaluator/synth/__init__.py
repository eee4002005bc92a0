"""A seeded, deterministic synthetic HECKTOR challenge: ground truth and team submissions.

``generate_challenge(out_dir, seed=0)`` writes a folder laid out like the released data
(docs/scoring.md section 1) plus a few teams' submissions (docs/scoring.md section 2) of known, graded
quality, so the scorer, the service and the leaderboard can be exercised end to end
without the real (licensed) data::

    out_dir/
      ground_truth/Task 1/<PatientID>/<PatientID>.nii.gz   uint8: 0 bg, 1 GTVp, 2 GTVn
      ground_truth/Task 2/HECKTOR_2025_Task_2.csv          PatientID,CenterID,RFS,Relapse
      ground_truth/Task 3/HECKTOR_2025_Task_3.csv          PatientID,CenterID,HPV Status
      inputs/<PatientID>/<PatientID>__CT.nii.gz            int16 CT on the label's grid
      inputs/<PatientID>/<PatientID>__PT.nii.gz            float32 PET (evaluator.synth.inputs)
      inputs/<PatientID>/ehr.json                           the clinical record (no target)
      submissions/<team>/task1.zip                          <PatientID>.nii.gz per case
      submissions/<team>/task2.csv                          PatientID,Prediction (risk)
      submissions/<team>/task3.csv                          PatientID,Prediction (P(HPV+))
      manifest.json                                         seed, cases, teams, expected order

Realism follows the data paper (seed/): centres in the proportions of its Fig. 2a,
~80% censored RFS and ~67% HPV positive (Fig. 3); CT grids of 512x512 x 90-300
slices with per-centre spacing; one irregular GTVp of 5-80 ml in ~96% of patients,
0-6 GTVn of 0.5-20 ml in ~89%, kept apart from the GTVp and mostly from each other,
sometimes two nodes touching (one lesion under 26-connectivity). ``small=True``
gives 64x64 x 24-48 grids (spacing x4 in-plane, >= 5 mm slices) for fast tests.

Teams (``TEAM_PRESETS``) degrade the truth increasingly: perfect (exact copy, best
possible C-index, probability = label) > good > mediocre > poor on every ranking
metric (GTVp mean DSC, GTVn aggregated DSC and F1, C-index, AUC). The teams share
their random draws, each scaled by the team's damage, so a worse team makes the
better team's mistakes and more: for Task 2/3 the order then can only fall and is
made strict by redrawing; for Task 1 it holds in practice (tests check it on
several seeds; with very few cases, ties or swaps are possible).

Deterministic: one seed gives byte-identical files on one installation (numpy
``PCG64`` streams keyed by purpose and case, gzip streams with mtime 0, zip members
with a fixed timestamp); another zlib build may compress differently, the decoded
content stays the same. A team's output does not depend on which other teams are
requested.
"""

from evaluator.synth.challenge import SynthSummary, generate_challenge
from evaluator.synth.cohort import CENTRES, GTVN_ML, GTVP_ML, Centre
from evaluator.synth.images import nifti_gz_bytes
from evaluator.synth.manifest import GENERATOR, GENERATOR_VERSION, TASK2_CSV, TASK3_CSV
from evaluator.synth.team_presets import TEAM_PRESETS, TeamPreset

__all__ = [
    "CENTRES",
    "GENERATOR",
    "GENERATOR_VERSION",
    "GTVN_ML",
    "GTVP_ML",
    "TASK2_CSV",
    "TASK3_CSV",
    "TEAM_PRESETS",
    "Centre",
    "SynthSummary",
    "TeamPreset",
    "generate_challenge",
    "nifti_gz_bytes",
]
