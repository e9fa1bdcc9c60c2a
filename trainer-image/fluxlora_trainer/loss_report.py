"""The loss curve of a run: a per-step CSV and a PNG plot (drawn with Pillow, no plotting
library in the image)."""

import csv
from pathlib import Path

from PIL import Image, ImageDraw

from fluxlora_trainer.train_loop import StepReport

SIZE = (900, 500)
MARGIN = 60


def write_loss_csv(path: Path, reports: list[StepReport]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "loss", "smoothed_loss", "elapsed_seconds"])
        for r in reports:
            writer.writerow(
                [r.step, f"{r.loss:.6f}", f"{r.smoothed_loss:.6f}", f"{r.elapsed_seconds:.2f}"]
            )
    return path


def plot_loss(path: Path, reports: list[StepReport], title: str) -> Path:
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN, MARGIN // 2, SIZE[0] - MARGIN // 2, SIZE[1] - MARGIN
    draw.rectangle((left, top, right, bottom), outline="black")
    draw.text((left, 8), title, fill="black")
    if reports:
        losses = [r.loss for r in reports] + [r.smoothed_loss for r in reports]
        low, high = min(losses), max(losses)
        span = (high - low) or 1.0
        last_step = max(r.step for r in reports)
        first_step = min(r.step for r in reports)

        def point(step: int, value: float) -> tuple[float, float]:
            x = left + (right - left) * (step - first_step) / max(1, last_step - first_step)
            y = bottom - (bottom - top) * (value - low) / span
            return x, y

        draw.line([point(r.step, r.loss) for r in reports], fill=(170, 190, 230), width=1)
        draw.line([point(r.step, r.smoothed_loss) for r in reports], fill=(20, 60, 160), width=2)
        draw.text((4, top), f"{high:.3f}", fill="black")
        draw.text((4, bottom - 10), f"{low:.3f}", fill="black")
        draw.text((left, bottom + 8), f"step {first_step}", fill="black")
        draw.text((right - 80, bottom + 8), f"step {last_step}", fill="black")
    image.save(path)
    return path
