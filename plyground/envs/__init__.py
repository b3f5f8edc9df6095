"""Text environments and their registry.

A new env is one module plus one ``register(...)`` line below (or in your own package).
"""

from plyground.envs.checker import check_env
from plyground.envs.core import EnvSnapshot, TextEnv, TextSpace
from plyground.envs.registration import EnvSpec, list_envs, make, register, spec

__all__ = [
    "EnvSnapshot",
    "EnvSpec",
    "TextEnv",
    "TextSpace",
    "check_env",
    "list_envs",
    "make",
    "register",
    "spec",
]

# -- built-in environments -------------------------------------------------------------------
register(
    "GuessNumber-v0",
    "plyground.envs.guess_number:GuessNumberEnv",
    kind="multi-turn",
    max_turns=10,
    reward_range=(0.0, 1.0),
    description="Find a hidden integer in 1..N from higher/lower feedback.",
)
register(
    "Arithmetic-v0",
    "plyground.envs.arithmetic:ArithmeticEnv",
    kind="single-turn",
    max_turns=1,
    reward_range=(0.0, 1.0),
    description="Solve one generated arithmetic problem; scored by the numeric verifier.",
)
register(
    "Wordle-v0",
    "plyground.envs.lmrl.wordle:WordleEnv",
    kind="multi-turn",
    max_turns=6,
    reward_range=(-1.0, 0.0),
    description="LMRL-Gym Wordle: six guesses, G/Y/B feedback; the benchmark's 431-word vocabulary.",
)
register(
    "Wordle-Official-v0",
    "plyground.envs.lmrl.wordle:WordleEnv",
    kind="multi-turn",
    max_turns=6,
    reward_range=(-1.0, 0.0),
    description="Wordle with the official lists: 2,315 answers, 12,972 allowed guesses.",
    answers="official",
    allowed="official-guesses",
)
register(
    "Maze-v0",
    "plyground.envs.lmrl.maze:MazeEnv",
    kind="multi-turn",
    max_turns=101,
    reward_range=(-4.0, 0.0),
    description="LMRL-Gym Maze, fully observed: goal, position and walls; 100 moves.",
)
register(
    "Maze-PO-v0",
    "plyground.envs.lmrl.maze:MazeEnv",
    kind="multi-turn",
    max_turns=101,
    reward_range=(-4.0, 0.0),
    description="LMRL-Gym Maze, partially observed: only the walls around you; 100 moves.",
    fully_observed=False,
)
register(
    "Chess-v0",
    "plyground.envs.lmrl.chess:ChessEnv",
    kind="multi-turn",
    max_turns=401,
    reward_range=(-1.0, 1.0),
    components=("stockfish",),
    description="LMRL-Gym Chess: play white from FEN boards against Stockfish at Elo 1200; 400 moves.",
)
register(
    "Endgames-v0",
    "plyground.envs.lmrl.chess:EndgamesEnv",
    kind="multi-turn",
    max_turns=401,
    reward_range=(-1.0, 1.0),
    components=("stockfish",),
    description="LMRL-Gym Endgames: mate with KQ/KR/KQR/KRR against a lone king, Stockfish at Elo 1200.",
)
register(
    "MathHints-v0",
    "plyground.envs.math_envs:MathHintsEnv",
    kind="single-turn",
    max_turns=1,
    reward_range=(0.0, 1.0),
    description="One math problem; Scaf-GRPO hints (knowledge/planning/solution) at a level chosen at reset.",
)
register(
    "MathSelfCorrect-v0",
    "plyground.envs.math_envs:MathSelfCorrectEnv",
    kind="multi-turn",
    max_turns=2,
    reward_range=(0.0, 1.0),
    description="SCoRe protocol: attempt, correction prompt, second attempt; reward on the second.",
)
register(
    "MathHintDialogue-v0",
    "plyground.envs.math_envs:MathHintDialogueEnv",
    kind="multi-turn",
    max_turns=5,
    reward_range=(0.0, 1.0),
    description="A wrong answer gets the next hint on the Scaf-GRPO ladder; up to 5 answers.",
)
register(
    "TwentyQuestions-v0",
    "plyground.envs.lmrl.twenty_questions:TwentyQuestionsEnv",
    kind="multi-turn",
    max_turns=20,
    reward_range=(-1.0, 0.0),
    description="LMRL-Gym Twenty Questions: yes/no questions to find one of 169 objects; rule-based oracle "
    "(oracle= / oracle_backend=<backend name or spec>, oracle_model= for an LLM).",
)
register(
    "GuessMyCity-v0",
    "plyground.envs.lmrl.guess_city:GuessMyCityEnv",
    kind="multi-turn",
    max_turns=20,
    reward_range=(-1.0, 0.0),
    description="LMRL-Gym Guess My City: open or yes/no questions to find one of 69 cities; rule-based oracle "
    "(oracle_backend=<backend name or spec>, oracle_model= for an LLM).",
)
register(
    "CarDealer-v0",
    "plyground.envs.lmrl.car_dealer:CarDealerEnv",
    kind="multi-turn",
    max_turns=25,
    reward_range=(-10.0, 2.0),
    description="LMRL-Gym Car Dealer: sell to a buyer with a hidden budget and wishes, <= 50 lines; rule-based buyer "
    "(oracle_backend=<backend name or spec>, oracle_model= for an LLM).",
)
register(
    "TextNav-v0",
    "plyground.envs.lmrl.text_nav:TextNavEnv",
    kind="multi-turn",
    max_turns=15,
    reward_range=(0.0, 1.0),
    description="LMRL-Gym Text-Nav, fully observed: put the stale food in the fridge and close it; 15 commands.",
)
register(
    "TextNav-PO-v0",
    "plyground.envs.lmrl.text_nav:TextNavEnv",
    kind="multi-turn",
    max_turns=15,
    reward_range=(0.0, 1.0),
    description="LMRL-Gym Text-Nav, partially observed: no room name or inventory shown; 15 commands.",
    fully_observed=False,
)
register(
    "Prove-v0",
    "plyground.envs.proving:make_prove_env",
    kind="multi-turn",
    max_turns=32,
    reward_range=(0.0, 1.0),
    components=("coq",),
    description="Prove a theorem one tactic at a time: Coq (coqtop, default; 170-theorem graded set) or "
    "backend='lean' (Lean 4 REPL, lean_project=); reward 1 for a checked proof with no axioms.",
)
register(
    "CoqProof-v0",
    "plyground.envs.proving:CoqProofEnv",
    kind="multi-turn",
    max_turns=32,
    reward_range=(0.0, 1.0),
    components=("coq",),
    description="Alias of Prove-v0 with the Coq backend.",
)
register(
    "WebShop-v0",
    "plyground.envs.webshop:WebShopEnv",
    kind="multi-turn",
    max_turns=15,
    reward_range=(0.0, 1.0),
    components=("webserver",),
    description="WebShop (text mode): search[...] / click[...] on a local shop server (FastAPI + BM25); "
    "seeded 1,000-product catalogue (num_products=, catalogue=); reward at Buy Now as upstream.",
)
register(
    "WebShop-Browser-v0",
    "plyground.envs.webshop:WebShopBrowserEnv",
    kind="multi-turn",
    max_turns=15,
    reward_range=(0.0, 1.0),
    components=("webserver", "chromium"),
    description="WebShop through headless Chromium (Playwright, /usr/bin/chromium): same site and text as "
    "WebShop-v0; screenshot=True adds a PNG to info.",
)
register(
    "ALFWorld-v0",
    "plyground.envs.alfworld:AlfWorldEnv",
    kind="multi-turn",
    max_turns=50,
    reward_range=(0.0, 1.0),
    components=("textworld",),
    description="ALFWorld (text): TextWorld's PDDL engine with ALFWorld's alfred.pddl/twl2; six task types "
    "(task_type=), generated seeded games or official game.tw-pddl files (game_paths=); planner expert plan.",
)
