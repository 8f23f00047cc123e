"""Tests for mtl_jax.step.metrics against values worked out by hand."""

import math
import warnings

import numpy as np
import pytest

from mtl_jax.step import metrics as M

# Binary example: targets [1,0,1,1], predictions [1,1,1,0]
#   idx0 1/1 TP, idx1 0/1 FP, idx2 1/1 TP, idx3 1/0 FN  -> TP=2 FP=1 FN=1 TN=0
BT, BP = [1, 0, 1, 1], [1, 1, 1, 0]


def _plain_floats(d):
    assert all(type(v) is float for v in d.values()), {k: type(v) for k, v in d.items()}


def test_accuracy():
    # 2 of 4 correct (idx0, idx2)
    r = M.accuracy(BT, BP)
    assert r == {"accuracy": 0.5}
    _plain_floats(r)
    # string labels work too: 2 of 3 correct
    assert M.accuracy(["a", "b", "c"], ["a", "b", "b"])["accuracy"] == pytest.approx(2 / 3)


def test_f1_binary():
    # F1 = 2TP / (2TP + FP + FN) = 4 / (4 + 1 + 1) = 2/3
    r = M.f1_binary(BT, BP)
    assert r["f1"] == pytest.approx(2 / 3)
    _plain_floats(r)
    # class 1 absent from both -> 0.0, no crash (sklearn 'binary' would raise)
    assert M.f1_binary([2, 3], [2, 2]) == {"f1": 0.0}
    assert M.f1_binary([0, 0], [0, 0]) == {"f1": 0.0}


def test_f1_macro():
    # targets [0,1,2,2], predictions [0,2,2,1]
    #   class 0: TP=1 FP=0 FN=0 -> F1 1
    #   class 1: TP=0 (gold idx1 predicted 2, pred idx3 gold 2) -> F1 0
    #   class 2: TP=1 (idx2), FP=1 (idx1), FN=1 (idx3) -> 2/(2+1+1) = 0.5
    #   macro = (1 + 0 + 0.5) / 3 = 0.5
    r = M.f1_macro([0, 1, 2, 2], [0, 2, 2, 1])
    assert r["f1_macro"] == pytest.approx(0.5)
    _plain_floats(r)


def test_mcc():
    # BT/BP: (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
    #      = (2*0 - 1*1) / sqrt(3*3*1*1) = -1/3
    assert M.mcc(BT, BP)["mcc"] == pytest.approx(-1 / 3)
    # targets [1,1,1,0,0,0,1,0], predictions [1,1,0,0,0,1,1,0]
    #   TP idx0,1,6 = 3; FN idx2 = 1; FP idx5 = 1; TN idx3,4,7 = 3
    #   (3*3 - 1*1) / sqrt(4*4*4*4) = 8/16 = 0.5
    r = M.mcc([1, 1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1, 0])
    assert r["mcc"] == pytest.approx(0.5)
    _plain_floats(r)


def test_mcc_constant_predictions_is_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.mcc([1, 0, 1, 0], [1, 1, 1, 1]) == {"mcc": 0.0}
        assert M.mcc([1, 1], [1, 1]) == {"mcc": 0.0}


def test_pearson_spearman():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([0.5, 3.0, 2.0, 10.0])
    # Pearson by the explicit formula sum(dt*dp) / sqrt(sum(dt^2) * sum(dp^2))
    dt, dp = t - t.mean(), p - p.mean()
    pearson = (dt * dp).sum() / math.sqrt((dt ** 2).sum() * (dp ** 2).sum())
    # Spearman via ranks: rank(t) = [1,2,3,4], rank(p) = [1,3,2,4]
    #   d = [0,-1,1,0], sum d^2 = 2; rho = 1 - 6*2 / (4*(16-1)) = 1 - 12/60 = 0.8
    r = M.pearson_spearman(list(t), list(p))
    assert r["pearson"] == pytest.approx(pearson)
    assert r["spearman"] == pytest.approx(0.8)
    _plain_floats(r)
    # Symmetric 4-point case fully by hand: t=[1,2,3,4], p=[2,1,4,3]
    #   dt=[-1.5,-.5,.5,1.5], dp=[-.5,-1.5,1.5,.5]; sum dt*dp = 4*0.75 = 3
    #   sum dt^2 = sum dp^2 = 5 -> r = 3/5 = 0.6 (ranks == values -> rho 0.6)
    r = M.pearson_spearman([1, 2, 3, 4], [2, 1, 4, 3])
    assert r["pearson"] == pytest.approx(0.6)
    assert r["spearman"] == pytest.approx(0.6)


def test_pearson_constant_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.pearson_spearman([1, 2, 3], [2.5, 2.5, 2.5]) == {"pearson": 0.0, "spearman": 0.0}
        assert M.pearson_spearman([7, 7, 7], [1, 2, 3]) == {"pearson": 0.0, "spearman": 0.0}
        assert M.pearson_spearman([1.0], [2.0]) == {"pearson": 0.0, "spearman": 0.0}


def test_mse():
    # errors 0, 1, 2 -> (0 + 1 + 4) / 3 = 5/3
    r = M.mse([1, 2, 3], np.array([1.0, 3.0, 5.0]))
    assert r["mse"] == pytest.approx(5 / 3)
    _plain_floats(r)


@pytest.mark.parametrize("fn", [M.accuracy, M.f1_macro, M.f1_binary, M.mcc,
                                M.pearson_spearman, M.mse, M.token_accuracy, M.span_f1])
def test_empty_and_mismatch_raise(fn):
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match=r"3 targets vs 2 predictions"):
        fn([[1]] * 3 if fn in (M.token_accuracy, M.span_f1) else [1, 0, 1],
           [[1]] * 2 if fn in (M.token_accuracy, M.span_f1) else [1, 0])


def test_regression_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        M.pearson_spearman([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="NaN"):
        M.mse([1.0, float("inf")], [1.0, 2.0])


def test_bio_spans():
    tags = ["B-per", "I-per", "O", "I-loc", "I-loc",
            "B-org", "B-org", "I-per", "B-loc", "I-org"]
    # 0-1 B-per I-per             -> ('per', 0, 2)
    # 3 orphan I-loc opens a span, 4 continues -> ('loc', 3, 5)
    # 5 B-org, then 6 B-org opens a new one  -> ('org', 5, 6)
    # 6 B-org, 7 I-per is a different type   -> ('org', 6, 7)
    # 7 I-per starts per, 8 B-loc closes it  -> ('per', 7, 8)
    # 8 B-loc, 9 I-org different type        -> ('loc', 8, 9)
    # 9 I-org runs to sentence end           -> ('org', 9, 10)
    assert M.bio_spans(tags) == [("per", 0, 2), ("loc", 3, 5), ("org", 5, 6),
                                 ("org", 6, 7), ("per", 7, 8), ("loc", 8, 9),
                                 ("org", 9, 10)]
    assert M.bio_spans([]) == []
    assert M.bio_spans(["O", "O"]) == []
    # multi-hyphen types keep everything after the prefix
    assert M.bio_spans(["B-GPE-city", "I-GPE-city"]) == [("GPE-city", 0, 2)]
    with pytest.raises(ValueError, match="invalid BIO tag 'X-per' at position 1"):
        M.bio_spans(["O", "X-per"])


# Two sentences:
#   S1 gold B-per I-per O B-loc        -> per(0,2), loc(3,4)
#   S1 pred B-per O     O B-loc        -> per(0,1) wrong, loc(3,4) right
#   S2 gold O      B-org I-org O B-per -> org(1,3), per(4,5)
#   S2 pred B-misc B-org I-org O B-per -> misc(0,1) wrong, org(1,3) right, per(4,5) right
#   gold 4, pred 5, correct 3 -> P = 3/5, R = 3/4, F1 = 2*3/(5+4) = 2/3
#   tokens: S1 3/4 right (idx1 wrong), S2 4/5 right (idx0 wrong) -> 7/9
GOLD = [["B-per", "I-per", "O", "B-loc"], ["O", "B-org", "I-org", "O", "B-per"]]
PRED = [["B-per", "O", "O", "B-loc"], ["B-misc", "B-org", "I-org", "O", "B-per"]]


def test_span_f1():
    r = M.span_f1(GOLD, PRED)
    assert r["span_precision"] == pytest.approx(3 / 5)
    assert r["span_recall"] == pytest.approx(3 / 4)
    assert r["span_f1"] == pytest.approx(2 / 3)
    _plain_floats(r)
    # right boundaries but wrong type is not a match
    assert M.span_f1([["B-per", "I-per"]], [["B-loc", "I-loc"]])["span_f1"] == 0.0
    # no spans anywhere -> 0.0 (conlleval), not NaN
    assert M.span_f1([["O"]], [["O"]]) == {"span_precision": 0.0, "span_recall": 0.0,
                                           "span_f1": 0.0}


def test_token_accuracy():
    r = M.token_accuracy(GOLD, PRED)
    assert r["token_accuracy"] == pytest.approx(7 / 9)
    _plain_floats(r)
    with pytest.raises(ValueError, match="all sentences are empty"):
        M.token_accuracy([[]], [[]])


@pytest.mark.parametrize("fn", [M.token_accuracy, M.span_f1])
def test_tagging_errors(fn):
    with pytest.raises(ValueError, match="sentence 1: 5 target tags vs 4 predicted tags"):
        fn(GOLD, [PRED[0], PRED[1][:4]])
    with pytest.raises(ValueError, match="single string"):
        fn(["B-per", "O"], ["B-per", "O"])


def test_primary_metric_keys_exist_in_outputs():
    bin_t, bin_p = [1, 0, 1, 1], [1, 1, 1, 0]
    outputs = {
        "accuracy": M.accuracy(bin_t, bin_p),
        "f1_macro": M.f1_macro(bin_t, bin_p),
        "f1_binary": M.f1_binary(bin_t, bin_p),
        "mcc": M.mcc(bin_t, bin_p),
        "pearson_spearman": M.pearson_spearman(bin_t, bin_p),
        "mse": M.mse(bin_t, bin_p),
        "token_accuracy": M.token_accuracy(GOLD, PRED),
        "span_f1": M.span_f1(GOLD, PRED),
    }
    assert set(M.PRIMARY_METRIC) == set(outputs)
    for name, key in M.PRIMARY_METRIC.items():
        assert callable(getattr(M, name))
        if key is None:
            assert name == "mse"
        else:
            assert key in outputs[name]
            assert M.headline(outputs[name]) == outputs[name][key]


def test_headline_order():
    assert M.headline({"accuracy": 0.9, "mcc": 0.4}) == 0.4             # CoLA -> MCC
    assert M.headline({"pearson": 0.8, "spearman": 0.7}) == 0.8         # STS-B -> Pearson
    assert M.headline({"token_accuracy": 0.95, "span_f1": 0.7,
                       "span_precision": 0.6, "span_recall": 0.8}) == 0.7  # NER
    assert M.headline({"accuracy": 0.8, "f1": 0.85}) == 0.8             # MRPC/QQP
    assert M.headline({"f1_macro": 0.6, "accuracy": 0.7}) == 0.6
    assert type(M.headline({"accuracy": np.float64(0.5)})) is float
    with pytest.raises(ValueError, match="no headline metric"):
        M.headline({"mse": 0.3})
