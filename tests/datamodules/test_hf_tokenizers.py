"""Each text tokenizer as a transformers tokenizer (``to_hf``, saved with save_pretrained and read back with
AutoTokenizer, as a run folder keeps it): the same ids and text as the tokenizer the data was cached with."""
import pytest
from transformers import AutoTokenizer

from datamodules.tokenizers import EOS_TOKEN, CharTokenizer, FastTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\tSpeak, speak! 3 times"


@pytest.mark.parametrize("make", [lambda: CharTokenizer.from_texts([TEXT]),
                                  lambda: FastTokenizer.train([TEXT * 20], vocab_size=300)], ids=["char", "bpe"])
def test_saved_hf_tokenizer_gives_the_same_ids_and_text(tmp_path, make):
    ours = make()
    ours.to_hf().save_pretrained(tmp_path)
    theirs = AutoTokenizer.from_pretrained(tmp_path)
    ids = ours.encode(TEXT)
    assert theirs.encode(TEXT, add_special_tokens=False) == ids
    assert theirs.decode(ids) == TEXT
    assert theirs.eos_token == EOS_TOKEN and theirs.eos_token_id == ours.eos_id == theirs.pad_token_id
    assert len(theirs) == ours.vocab_size
    # EOS between documents is one token, as in the token cache
    assert theirs.encode("me" + EOS_TOKEN + "All", add_special_tokens=False) == \
        ours.encode("me") + [ours.eos_id] + ours.encode("All")
