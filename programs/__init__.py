"""DSPy programs: single-LLM systems for the classic NLP tasks, each with its dataset and metric.

One module per task, each a runnable target (``roost run programs.<name>``, see
:mod:`roost.targets`): ``classify``, ``ner``, ``qa``, ``translate``, ``summarize``,
``paraphrase``, ``transliterate``, ``text2code``. Each defines a Signature, a Module,
``metric(example, prediction, trace=None)`` and ``TASK`` (its train/dev files in
``programs/data/``); :mod:`programs.common` holds what they share.
"""
