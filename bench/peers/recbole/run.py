"""RecBole 1.2.1's SASRec on one data set, as a peer: `run.py <dataset> <threads> [epochs]`.

Builds the trainer itself: RecBole's quick-start module imports ray, which fails on numpy 2's removals.
"""

import sys
import time
from pathlib import Path

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed


def main(dataset: str, threads: int, epochs: int | None) -> None:
    torch.set_num_threads(threads)
    overrides = {"epochs": epochs} if epochs else {}
    config_file = str(Path(__file__).with_name("config.yaml"))
    config = Config(model="SASRec", dataset=dataset, config_file_list=[config_file], config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    started = time.time()
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    trainer = Trainer(config, SASRec(config, train._dataset).to(config["device"]))
    fit_started = time.time()
    best_valid, best_result = trainer.fit(train, valid, saved=True, show_progress=False)
    fit_seconds = time.time() - fit_started
    test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    print(
        "RESULT best_valid", best_valid, "valid", dict(best_result), "test", dict(test_result),
        "data_s", round(fit_started - started, 1), "fit_s", round(fit_seconds, 1), flush=True,
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
