"""Small tasks written for roost, with their data and reward functions (see :mod:`finetune.tasks.arithmetic`)."""
