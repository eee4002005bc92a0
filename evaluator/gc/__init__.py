"""The grand-challenge evaluation container: ``hecktor-eval gc-evaluate``.

Reads what grand-challenge gives an evaluation (``/input/predictions.json`` and each
algorithm job's outputs under ``/input/<job pk>/output/``), maps every job to a
patient of the ground truth, stages the outputs in the layout ``hecktor-eval score``
reads, scores them with the same :func:`evaluator.scoring.load_ground_truth` and
:func:`evaluator.scoring.score_submission`, and writes ``/output/metrics.json``.

    predictions   predictions.json -> jobs and their socket values
    sockets       the outputs each protocol's tasks score, by relative path
    mapping       job -> PatientID (name rule on the CT input, or manifest.json)
    collect       each job's output files found, checked and staged per task
    metrics_json  result documents -> metrics.json (finite numbers only)
    evaluate      the whole run, and its settings from flags and environment
    inputs        an algorithm phase's hidden inputs as each job's /input (inputs.json, .mha)
"""
