"""llava_mini: LLaVA ("Visual Instruction Tuning", Liu et al., 2023) rebuilt from scratch at toy scale.

The data's path through the package follows the paper's Figure 1:
world (images X_v) -> teacher (instructions X_q, answers X_a) -> vision (Z_v = g(X_v))
-> projector (H_v = W . Z_v) -> lm (f_phi) -> llava (the whole model and its loss).
"""

__version__ = "0.1.0"
