"""WebShop's purchase reward: ``reward(goal, purchase) -> float`` (see ``plyground.envs.webshop.reward``)."""

from plyground.envs.webshop.reward import (
    Purchase,
    RewardInfo,
    normalize_color,
    reward,
    reward_info,
    token_set_ratio,
)

__all__ = ["Purchase", "RewardInfo", "normalize_color", "reward", "reward_info", "token_set_ratio"]
