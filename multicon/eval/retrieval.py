"""Image–text retrieval recall R@K in both directions, over all images and all their captions.

Image→text: an image is a hit at K when any of its captions is among the K texts nearest to it.
Text→image: a caption is a hit at K when its image is among the K images nearest to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from multicon.progress import progress as progress_bar


def retrieval_recall(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    text_image: torch.Tensor | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K in percent: ``image_to_text/R@K`` and ``text_to_image/R@K``.

    Args:
        image_embeddings: ``(N, D)``.
        text_embeddings: ``(M, D)``.
        text_image: ``(M,)`` index of the image each text describes.
        ks: the K values (capped at N or M).

    Example:
        >>> import torch
        >>> images = torch.eye(3)
        >>> texts = torch.tensor([[1., 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0, 1, 0]])
        >>> r = retrieval_recall(images, texts, [0, 0, 1, 2], ks=(1,))
        >>> round(r["image_to_text/R@1"], 1), r["text_to_image/R@1"]
        (33.3, 50.0)
    """
    text_image = torch.as_tensor(text_image, dtype=torch.long, device=image_embeddings.device)
    n, m = image_embeddings.shape[0], text_embeddings.shape[0]
    if text_image.shape != (m,):
        raise ValueError(f"text_image must be ({m},) for {m} texts, got {tuple(text_image.shape)}")
    if m and (int(text_image.min()) < 0 or int(text_image.max()) >= n):
        raise ValueError(f"text_image holds indices outside [0, {n}) images")
    sim = (
        F.normalize(image_embeddings.float(), dim=-1)
        @ F.normalize(text_embeddings.float(), dim=-1).T
    )
    out: dict[str, float] = {}
    for k in ks:
        top_texts = sim.topk(min(k, m), dim=1).indices  # (N, k)
        i2t = (text_image[top_texts] == torch.arange(n, device=sim.device)[:, None]).any(1)
        top_images = sim.T.topk(min(k, n), dim=1).indices  # (M, k)
        t2i = (top_images == text_image[:, None]).any(1)
        out[f"image_to_text/R@{k}"] = 100.0 * i2t.float().mean().item()
        out[f"text_to_image/R@{k}"] = 100.0 * t2i.float().mean().item()
    return out


@torch.no_grad()
def embed_corpus(
    model, corpus, *, batch_size: int = 256, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Embed every image and every caption of a `CaptionCorpus` with a `DualEncoder`.

    Returns ``(image_embeddings, text_embeddings, text_image)``. ``progress``: tqdm bars
    (main process only) counting images, then captions.
    """
    was_training = model.training
    model.eval()
    transform = model.image_transform(train=False)
    images = []
    with progress_bar(
        enabled=progress, total=len(corpus), desc="image embeddings", unit="img"
    ) as bar:
        for start in range(0, len(corpus), batch_size):
            stop = min(start + batch_size, len(corpus))
            batch = [transform(corpus.image(i)) for i in range(start, stop)]
            images.append(model.encode_image(torch.stack(batch)).cpu())
            bar.update(stop - start)
    texts, owners = corpus.flat_captions()
    text_emb = []
    with progress_bar(
        enabled=progress, total=len(texts), desc="text embeddings", unit="caption"
    ) as bar:
        for s in range(0, len(texts), batch_size):
            text_emb.append(model.encode_text(texts[s : s + batch_size]).cpu())
            bar.update(len(texts[s : s + batch_size]))
    model.train(was_training)
    return torch.cat(images), torch.cat(text_emb), owners


def evaluate_retrieval(
    model,
    corpus,
    *,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, float]:
    """R@K both ways of a `DualEncoder` on every image and caption of a `CaptionCorpus`."""
    images, texts, owners = embed_corpus(model, corpus, batch_size=batch_size, progress=progress)
    return retrieval_recall(images, texts, owners, ks)
