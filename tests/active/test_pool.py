"""Pool strategies: typical images first, coverage, disagreement weighed by typicality, and the switch between."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.active.embeddings import model_free_embedding, pixel_embedding, project
from scn_annotator.active.pool import POOL_STRATEGIES, PoolInput, kmeans, pick, typicality
from scn_annotator.app.sample_spine import render_spine


def _clustered_pool(sizes=(10, 7, 5), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Phantom spines in tight clusters: each cluster one rendered spine, its members that image with a
    little noise and brightness change. Returns (embeddings, cluster of each)."""
    rng = np.random.default_rng(seed)
    bases = [render_spine(np.random.default_rng(100 + c))[0].astype(float) for c in range(len(sizes))]
    vectors, labels = [], []
    for c, size in enumerate(sizes):
        for _ in range(size):
            image = bases[c] * rng.uniform(0.95, 1.05) + rng.normal(0, 3, bases[c].shape)
            vectors.append(pixel_embedding(image))
            labels.append(c)
    return np.array(vectors), np.array(labels)


def test_typical_takes_one_image_of_each_tight_cluster_and_random_does_not():
    vectors, clusters = _clustered_pool()
    ranked = pick("typical", PoolInput(vectors, np.empty((0, vectors.shape[1])), batch=3))
    first = [r.index for r in ranked[:3]]
    assert sorted(clusters[first].tolist()) == [0, 1, 2]
    assert sorted(r.index for r in ranked) == list(range(len(vectors)))  # every candidate, once
    assert all("typical" in r.reason for r in ranked) and "no labelled image covers" in ranked[0].reason
    draws = [np.random.default_rng(s).choice(len(vectors), 3, replace=False) for s in range(10)]
    assert any(len(set(clusters[d].tolist())) < 3 for d in draws)  # random misses a cluster
    # with the biggest cluster labelled already, the next batch of two covers the other two
    labelled = vectors[clusters == 0][:2]
    rest = np.flatnonzero(~np.isin(np.arange(len(vectors)), np.flatnonzero(clusters == 0)[:2]))
    again = pick("typical", PoolInput(vectors[rest], labelled, batch=2))
    assert sorted(clusters[rest][[r.index for r in again[:2]]].tolist()) == [1, 2]


def test_coverage_is_k_centre_greedy():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [10.0, 1.0], [5.0, 8.0]])
    labelled = np.array([[0.0, 0.5]])
    x = PoolInput(points, labelled, batch=2)
    # the projection is a rotation and per-axis scaling of these points: check the greedy rule in its space
    cand, lab = x.joint()
    ranked = POOL_STRATEGIES["coverage"].rank(x)
    chosen, nearest = [], np.linalg.norm(cand[:, None] - lab[None], axis=-1).min(axis=1)
    for r in ranked:
        expected = int(np.where(np.isin(np.arange(len(cand)), chosen), -np.inf, nearest).argmax())
        assert r.index == expected and "coverage" in r.reason
        chosen.append(r.index)
        nearest = np.minimum(nearest, np.linalg.norm(cand - cand[r.index], axis=1))
    assert ranked[-1].index in (0, 1)  # the images next to the labelled one come last


def test_dense_disagreement_ranks_a_doubtful_typical_image_above_an_equally_doubtful_outlier():
    rng = np.random.default_rng(1)
    crowd = rng.normal(0, 0.3, (20, 4))
    outlier = np.array([[8.0, 8.0, 8.0, 8.0]])
    vectors = np.concatenate([crowd, outlier])
    scores = np.full(len(vectors), 0.1)
    scores[[0, 20]] = 0.9  # one doubtful image in the crowd, the outlier as doubtful
    ranked = pick("dense_disagreement", PoolInput(vectors, np.empty((0, 4)), batch=2, scores=scores))
    order = [r.index for r in ranked]
    assert order[0] == 0 and order.index(0) < order.index(20)
    assert "disagreement 0.90" in ranked[0].reason and "typicality" in ranked[0].reason
    # without a model there is nothing to disagree about: the typical images, said so
    cold = pick("dense_disagreement", PoolInput(vectors, np.empty((0, 4)), batch=2))
    assert "no model yet" in cold[0].reason


def test_diverse_disagreement_takes_the_best_of_each_doubtful_group_where_dense_takes_one_group():
    vectors, clusters = _clustered_pool((8, 8, 8), seed=3)
    scores = np.where(clusters == 0, 0.9, np.where(clusters == 1, 0.6, 0.5))  # one group doubts most
    scores = scores + np.random.default_rng(0).uniform(0, 0.01, len(scores))
    x = PoolInput(vectors, np.empty((0, vectors.shape[1])), batch=3, scores=scores)
    dense = [r.index for r in pick("dense_disagreement", x)]
    assert set(clusters[dense[:3]].tolist()) == {0}  # three of the same way of failing
    ranked = pick("diverse_disagreement", x)
    first = [r.index for r in ranked[:3]]
    assert sorted(clusters[first].tolist()) == [0, 1, 2]
    for c in range(3):  # from each group, the member dense_disagreement ranks highest
        assert next(i for i in dense if clusters[i] == c) in first
    assert first[0] == dense[0] and "the best of a group of 8" in ranked[0].reason
    assert sorted(r.index for r in ranked) == list(range(len(vectors)))
    # a batch as large as the pool, or no model: as dense_disagreement
    whole = PoolInput(vectors, np.empty((0, vectors.shape[1])), batch=len(vectors), scores=scores)
    assert [r.index for r in pick("diverse_disagreement", whole)] == [
        r.index for r in pick("dense_disagreement", whole)
    ]


def test_auto_switches_from_typical_to_disagreement_at_the_configured_size():
    vectors, _ = _clustered_pool((6, 6), seed=2)
    scores = np.linspace(0, 1, len(vectors) - 4)
    labelled, cand = vectors[:4], vectors[4:]
    below = pick("auto", PoolInput(cand, labelled, batch=2, scores=scores), switch=5)
    assert "auto, 4 labelled (< 5) -> typical" in below[0].reason
    at = pick("auto", PoolInput(cand, labelled, batch=2, scores=scores), switch=4)
    assert "auto, 4 labelled -> disagreement" in at[0].reason
    assert [r.index for r in at] == [r.index for r in pick("dense_disagreement", PoolInput(cand, labelled, 2, scores))]


def test_typicality_kmeans_and_projection_on_known_cases():
    points = np.array([[0.0], [0.1], [0.2], [5.0]])
    dense = typicality(points, neighbours=2)
    assert dense.argmax() == 1 and dense.argmin() == 3
    labels = kmeans(np.array([[0.0], [0.1], [9.0], [9.1]]), 2, seed=0)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    # weights pull a centre: with the heavy point at 4, the point at 2 joins it rather than the light 0
    heavy = kmeans(np.array([[0.0], [2.0], [4.0]]), 2, seed=0, weights=np.array([1.0, 1.0, 100.0]))
    assert heavy[0] != heavy[2]
    assert project(np.ones((5, 7))).shape[0] == 5  # constant vectors: no division by zero
    with pytest.raises(ValueError, match="2-D"):
        pixel_embedding(np.zeros(5))
    image = np.random.default_rng(0).random((120, 80))
    assert model_free_embedding("gradients", image).shape == (8 * 7 * 7 * 4,)  # oriented gradients, 64 x 64
    np.testing.assert_array_equal(model_free_embedding("pixels", image), pixel_embedding(image))
    with pytest.raises(ValueError, match="not a model-free embedding"):
        model_free_embedding("features", image)


def test_a_fresh_project_without_a_model_is_ranked_by_typicality(sample_dir, tmp_path):
    """Right after the import: no model, no labels; ``rank`` orders the images and says why."""
    from scn_annotator.active.ranking import ranked_queue
    from scn_annotator.db.store import Project
    from scn_annotator.db.transfer import import_images

    project = Project.create(tmp_path / "fresh", [f"L{k}" for k in range(8)])
    import_images(project, sample_dir / "images")
    queue = ranked_queue(project, "typical")
    assert len(queue.rows) == 24 and queue.model_version is None
    assert all("typical" in r.reason and "(pixels)" in r.reason for r in queue.rows)
    assert len(project.embeddings.get("pixels", None)) == 24  # computed once, stored
    again = ranked_queue(project, "typical")
    assert [r.name for r in again.rows] == [r.name for r in queue.rows]
    # the default queue before any model: a fixed random order, saying why (typical images measured no better)
    default = ranked_queue(project)
    order = [r.name for r in default.rows]
    assert all("no model yet: a random order" in r.reason for r in default.rows)
    assert order == [r.name for r in ranked_queue(project).rows] and order != sorted(order)
    project.close()


def test_cost_aware_puts_the_image_that_teaches_as_much_for_fewer_corrections_first():
    rng = np.random.default_rng(4)
    cluster = rng.normal(0, 0.05, (12, 4))  # twelve alike images: equally typical
    x = PoolInput(cluster, np.empty((0, 4)), batch=2, scores=np.full(12, 1.0), costs=np.arange(12.0)[::-1])
    ranked = pick("cost_aware", x)
    assert ranked[0].index == 11 and ranked[-1].index == 0  # the fewest expected corrections first
    assert "expected corrections" in ranked[0].reason
    no_costs = PoolInput(cluster, np.empty((0, 4)), batch=2, scores=np.full(12, 1.0))
    assert [r.index for r in pick("cost_aware", no_costs)] == [r.index for r in pick("dense_disagreement", no_costs)]


def test_expected_corrections_count_the_landmarks_above_the_doubt_threshold():
    from scn_annotator.active.pool import doubt_threshold, expected_corrections

    doubt = np.array([[0.1, 0.9, np.nan], [0.95, 0.99, 0.2]])
    threshold = doubt_threshold(doubt, 0.4)
    assert threshold == pytest.approx(np.quantile([0.1, 0.9, 0.95, 0.99, 0.2], 0.6))
    np.testing.assert_array_equal(expected_corrections(doubt, threshold), [0, 2])
    assert doubt_threshold(np.full((2, 2), np.nan), 0.1) == float("inf")
