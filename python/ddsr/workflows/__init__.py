"""The workflows over the whole pipeline: ``make demo`` and ``make reproduce``.

They call the stages' functions in this process (each step printed as the command a user could
type) and ``caffe train`` as a child process, the paper's command.
"""
