"""Run the model's state machine on this machine: an Amazon States Language interpreter
(``interpreter``) and the local pipeline run around it (``runner``)."""
