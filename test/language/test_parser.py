"""The command parser: every intent with its slots, numbers and units, refusals, and safety."""

from __future__ import annotations

import math

import pytest

from fluorosam_ros.language import intents as K
from fluorosam_ros.language.numbers import normalize_command, words_to_digits
from fluorosam_ros.language.parser import EXAMPLES, CommandParser, ParserConfig


@pytest.fixture(scope="module")
def grammar() -> CommandParser:
    """The deterministic grammar alone (no encoder): fast, and what must already be right."""
    return CommandParser(config=ParserConfig(use_embeddings=False))


def slots(intent):
    return {"kind": intent.kind, **intent.slots()}


@pytest.mark.parametrize("text, expected", [
    ("show me the left femur", {"kind": "show", "structure": "femur_left"}),
    ("centre on L3", {"kind": "show", "structure": "vertebrae_L3"}),
    ("show me L three", {"kind": "show", "structure": "vertebrae_L3"}),
    ("go to lumbar five", {"kind": "show", "structure": "vertebrae_L5"}),
    ("show the right collarbone in lateral view", {"kind": "show", "structure": "clavicula_right", "view": "lateral"}),
    ("give me an AP of the pelvis", {"kind": "show", "structure": "pelvis", "view": "ap"}),
    ("pelvis inlet view", {"kind": "show", "structure": "pelvis", "view": "inlet"}),
    ("show the sacrum with a fifteen degree cranial tilt",
     {"kind": "show", "structure": "sacrum", "view": "cranial", "amount": 15.0, "unit": "deg"}),
    ("show me the right hip in left oblique", {"kind": "show", "structure": "hip_right", "view": "oblique_left"}),
    ("lateral view please", {"kind": "show", "view": "lateral"}),
    ("collimate on the liver", {"kind": "collimate", "structure": "liver"}),
    ("cone down", {"kind": "collimate", "direction": "tighter"}),
    ("open the collimator", {"kind": "collimate", "direction": "open"}),
    ("collimate wider", {"kind": "collimate", "direction": "wider"}),
    ("move left 2 cm", {"kind": "move", "direction": "left", "amount": 20.0, "unit": "mm"}),
    ("move caudally twenty five millimetres", {"kind": "move", "direction": "caudal", "amount": 25.0, "unit": "mm"}),
    ("move up one and a half centimetres", {"kind": "move", "direction": "up", "amount": 15.0, "unit": "mm"}),
    ("move 3 cm toward the feet", {"kind": "move", "direction": "caudal", "amount": 30.0, "unit": "mm"}),
    ("move the arm left 2 cm", {"kind": "move", "direction": "left", "amount": 20.0, "unit": "mm"}),
    ("shift down a bit", {"kind": "move", "direction": "down"}),
    ("rotate thirty degrees to the left", {"kind": "rotate", "direction": "left", "amount": 30.0, "unit": "deg"}),
    ("rotate LAO 20", {"kind": "rotate", "direction": "left", "amount": 20.0, "unit": "deg"}),
    ("rotate right", {"kind": "rotate", "direction": "right"}),
    ("tilt 15° cranial", {"kind": "tilt", "direction": "cranial", "amount": 15.0, "unit": "deg"}),
    ("tilt towards the feet two point five degrees", {"kind": "tilt", "direction": "caudal", "amount": 2.5, "unit": "deg"}),
    ("zoom in", {"kind": "zoom", "direction": "in"}),
    ("zoom out please", {"kind": "zoom", "direction": "out"}),
    ("take a shot", {"kind": "acquire"}),
    ("shoot", {"kind": "acquire"}),
    ("go back", {"kind": "undo"}),
    ("undo", {"kind": "undo"}),
    ("where is the spleen?", {"kind": "where", "structure": "spleen"}),
    ("highlight the right kidney", {"kind": "where", "structure": "kidney_right"}),
])
def test_every_intent_with_its_slots(grammar, text, expected):
    intent = grammar.parse(text)
    assert slots(intent) == expected, intent.describe()
    assert intent.confidence >= grammar.config.motion_threshold
    assert intent.source_text == text


@pytest.mark.parametrize("text, kind, slots", [
    ("move cranial twenty five millimeters", "move", {"direction": "cranial", "amount": 25.0, "unit": "mm"}),
    ("shift caudal 3 cm", "move", {"direction": "caudal", "amount": 30.0, "unit": "mm"}),
    ("show the pelvis cranial 20", "show", {"structure": "pelvis", "view": "cranial", "amount": 20.0, "unit": "deg"}),
    ("cranial 15 degrees", "show", {"view": "cranial", "amount": 15.0, "unit": "deg"}),
    ("move caudal 3", "not_understood", {}),             # a move without its unit is not a 3 degree tilt
    ("slide cranial twenty", "not_understood", {}),
])
def test_a_distance_with_cranial_or_caudal_is_a_move_a_bare_number_a_tilt(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert (intent.kind, intent.slots()) == (kind, slots)


@pytest.mark.parametrize("text", ["stop", "STOP!", "halt", "freeze", "abort", "hold still", "stop moving",
                                  "please stop now", "don't move", "do not move the C-arm", "stop zooming",
                                  "stop, go back", "zoom in stop", "show me the liver no stop"])
def test_stop_wins_over_everything(grammar, text):
    intent = grammar.parse(text)
    assert intent.kind == K.STOP and intent.confidence == 1.0


@pytest.mark.parametrize("text, error", [
    ("move left 2", "unit"),                    # 2 mm or 2 cm? ask
    ("rotate", "direction"),
    ("tilt up", "direction"),                   # up is not a tilt direction
    ("zoom", "in or out"),
    ("collimate", "open/tighter/wider"),
    ("show the femur oblique", "oblique"),
    ("don't zoom in", "negated"),
    ("show me the kneecap", "structure"),
    ("", "empty"),
    ("x" * 10_000, "longer than"),
    ("what a nice day outside", "no command"),
    # a target named but unknown (or misheard) is refused, not dropped: acting without it would
    # do something else
    ("take an image of the zebra", "'zebra' is not a structure"),
    ("take an image of the that", "'that' is not a structure"),
    ("bring up the are", "'are' is not a structure"),
    ("bring up the", "ends before its target"),
    ("cone down to four", "'4' is not a structure"),
    ("cone down on the", "ends before its target"),
])
def test_refusals_say_why_and_never_act(grammar, text, error):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts
    assert error in intent.error


@pytest.mark.parametrize("text, kind, slots", [
    ("move to the left", "move", {"direction": "left"}),
    ("move the c arm to the left 2 cm", "move", {"direction": "left", "amount": 20.0, "unit": "mm"}),
    ("move the c-arm up", "move", {"direction": "up"}),
    ("move towards the feet 20 mm", "move", {"direction": "caudal", "amount": 20.0, "unit": "mm"}),
    ("open up the collimators", "collimate", {"direction": "open"}),
    ("take an image of that", "acquire", {}),
    ("take a shot of the pelvis", "show", {"structure": "pelvis"}),
])
def test_the_machine_and_directions_after_the_are_no_unknown_target(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert (intent.kind, intent.slots()) == (kind, slots)


@pytest.mark.parametrize("text, expected", [
    ("undo the last move", {"kind": "undo"}),
    ("put it back", {"kind": "undo"}),
    ("take another shot", {"kind": "acquire"}),
    ("repeat the last image", {"kind": "acquire"}),
    ("one more image please", {"kind": "acquire"}),
    ("up 1 cm", {"kind": "move", "direction": "up", "amount": 10.0, "unit": "mm"}),   # no verb, a distance
    ("left 5 millimetres", {"kind": "move", "direction": "left", "amount": 5.0, "unit": "mm"}),
    ("which one is the left kidney", {"kind": "where", "structure": "kidney_left"}),
    ("where would the pancreas be", {"kind": "where", "structure": "pancreas"}),
])
def test_everyday_forms_of_undo_repeat_bare_moves_and_questions(grammar, text, expected):
    intent = grammar.parse(text)
    assert slots(intent) == expected, intent.describe()


@pytest.mark.parametrize("text, expected", [
    # a named view to return to is a show, not an undo (which would restore the last pose)
    ("go back to the AP view", {"kind": "show", "view": "ap"}),
    ("back to AP", {"kind": "show", "view": "ap"}),
    ("flip to lateral", {"kind": "show", "view": "lateral"}),
    ("go back to the previous view", {"kind": "undo"}),
    ("return to where we were", {"kind": "undo"}),
    ("go back to the liver", {"kind": "show", "structure": "liver"}),
    ("a hair to the right", {"kind": "move", "direction": "right"}),
    # alone, "wait" and "cancel" stop; inside talk they do not
    ("wait", {"kind": "stop"}),
    ("cancel that", {"kind": "stop"}),
    ("magnification up", {"kind": "zoom", "direction": "in"}),        # the fallback read it as out
    ("magnification down", {"kind": "zoom", "direction": "out"}),
    ("full field please", {"kind": "collimate", "direction": "open"}),
    ("open it all the way", {"kind": "collimate", "direction": "open"}),
    ("a touch to the left", {"kind": "move", "direction": "left"}),
    ("head-ward 10 millimetres", {"kind": "move", "direction": "cranial", "amount": 10.0, "unit": "mm"}),
    ("show me where the trachea is", {"kind": "where", "structure": "trachea"}),
    ("can you see the aorta", {"kind": "where", "structure": "aorta"}),   # spoken: no "?"
    ("tighter please", {"kind": "collimate", "direction": "tighter"}),
    ("a bit wider", {"kind": "collimate", "direction": "wider"}),
    ("where is the aortic arch", {"kind": "where", "structure": "aorta"}),
    ("can we do an outlet projection of the pelvis", {"kind": "show", "structure": "pelvis", "view": "outlet"}),
])
def test_views_to_return_to_short_stops_zoom_and_field_words(grammar, text, expected):
    intent = grammar.parse(text)
    assert slots(intent) == expected, intent.describe()


@pytest.mark.parametrize("text", ["let us wait for the radiologist", "the case got cancelled",
                                  "we have a full field of view", "a touch",
                                  "can i have the scalpel"])      # asks the nurse, not the C-arm
def test_stop_and_field_words_inside_talk_do_not_act(grammar, text):
    intent = grammar.parse(text)
    assert intent.kind not in ("stop",) and not intent.acts, intent.describe()


@pytest.mark.parametrize("text, error", [
    ("show me the shin bone", "confidence"),      # "bone" alone is the skeleton; "shin" is unknown
    ("show me the heart and lungs", "one at a time"),
    ("pass me another one", ""),                  # instruments, not a repeat exposure
    ("left 2", ""),                               # no verb and no unit: nothing to act on
])
def test_an_unknown_qualifier_or_a_second_structure_is_refused(grammar, text, error):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()
    assert error in intent.error


@pytest.mark.parametrize("text, error", [
    ("and me the retractor", "staff"),            # "[hand] me the retractor" with its verb lost: a tool alone
    ("me the liver", "confidence"),
    ("pan me the liver", "confidence"),           # a motion word does not take a person
    ("can you fire me", "confidence"),            # nor does an exposure ("can you hear me" misheard)
    ("move cranial it", "distance"),              # "move cranial eight" heard without its number
    ("move left that please", "distance"),
    ("show me the right side in left oblique view", "left or right of what"),   # "right [kidney]"
    ("give me a right lateral", "left or right of what"),                     # a view has no side
])
def test_a_lost_verb_a_pronoun_where_the_distance_goes_or_a_side_without_a_structure_is_refused(grammar, text, error):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()
    assert error in intent.error


@pytest.mark.parametrize("text, kind, slots", [
    ("show me the liver", K.SHOW, {"structure": "liver"}),
    ("could you please show us the aorta", K.SHOW, {"structure": "aorta"}),
    ("take me to the liver", K.SHOW, {"structure": "liver"}),
    ("bring up the liver for me", K.SHOW, {"structure": "liver"}),
    ("get me an AP of the pelvis", K.SHOW, {"structure": "pelvis", "view": "ap"}),
    ("move it cranial", K.MOVE, {"direction": "cranial"}),
    ("move that up", K.MOVE, {"direction": "up"}),
    ("move in now", K.MOVE, {"direction": "in"}),
    ("go to a left oblique", K.SHOW, {"view": "oblique_left"}),                # the oblique's own side
    ("show me the right kidney in left oblique view", K.SHOW, {"structure": "kidney_right", "view": "oblique_left"}),
])
def test_me_after_a_verb_it_before_the_direction_and_an_oblique_side_still_act(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.acts, intent.describe()
    assert all(intent.slots()[k] == v for k, v in slots.items()), intent.describe()


@pytest.mark.parametrize("text, kind, slots", [
    ("show me the 5th rib on the left", K.SHOW, {"structure": "rib_left_5"}),
    ("show me all the ribs", K.SHOW, {"structure": "ribs"}),
    ("true lateral of L4", K.SHOW, {"structure": "vertebrae_L4", "view": "lateral"}),
    ("cross-table lateral of the pelvis", K.SHOW, {"structure": "pelvis", "view": "lateral"}),
    ("show me the portal vein", K.SHOW, {"structure": "portal_vein_and_splenic_vein"}),
    ("move up half a centimetre", K.MOVE, {"direction": "up", "amount": 5.0, "unit": "mm"}),
    ("move left 2 and a half cm", K.MOVE, {"direction": "left", "amount": 25.0, "unit": "mm"}),
    ("raise the C-arm 4 cm", K.MOVE, {"direction": "up", "amount": 40.0, "unit": "mm"}),
    ("lower the arm a bit", K.MOVE, {"direction": "down"}),
    ("go ahead and shoot", K.ACQUIRE, {}),
    ("um can i have an ap of the pelvis", K.SHOW, {"structure": "pelvis", "view": "ap"}),
    ("right can i get an inlet view", K.SHOW, {"view": "inlet"}),      # a British opener, not a side
    ("right kidney please", K.SHOW, {"structure": "kidney_right"}),     # ... which a structure keeps
    ("wheres the pancreas", K.WHERE, {"structure": "pancreas"}),
    ("move left a centimetre", K.MOVE, {"direction": "left", "amount": 10.0, "unit": "mm"}),
    ("take me back to where we were", K.UNDO, {}),
    ("go to the pelvis 20 degrees cranial", K.SHOW, {"structure": "pelvis", "view": "cranial", "amount": 20.0,
                                                     "unit": "deg"}),
    ("show the heart and the great vessels", K.SHOW, {"structure": "heart_and_great_vessels"}),
    ("bring the collimator blades in", K.COLLIMATE, {"direction": "tighter"}),
    ("zoom out all the way", K.ZOOM, {"direction": "out"}),
    ("hit the pedal", K.ACQUIRE, {}),
    ("take another one", K.ACQUIRE, {}),
    ("hold", K.STOP, {}),
])
def test_forms_a_held_out_command_set_found_missing(grammar, text, kind, slots):
    """Written by an evaluator who never saw the parser (session 16); each failed before."""
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


@pytest.mark.parametrize("text, error", [
    ("move left by", "amount"),                 # the amount was lost: never the default step
    ("tilt cranial by", "angle"),
    ("rotate right by about", "angle"),
    ("highlight the left ureter", "cannot find"),   # no class for it: not the nearest organ
    ("show me the tibia", "cannot find"),
    ("where is the appendix?", "cannot find"),
    ("move cranial 30 degrees", "not deg"),     # a move in degrees is no tilt view
    ("can i have the scalpel", "staff"),   # having a thing is talk; having a view is a request
    ("the pedal is broken", "no command"),      # the foot switch mentioned, not pressed
    ("raise it left 2 cm", "one direction"),    # "raise" says up
    ("move cranial at", "amount"),              # "move cranial eight" heard without its number
    ("locate the left 13th rib", "no 13th rib"),   # not the ribs its noun names
    ("show me the first rib", "which side"),
])
def test_a_lost_amount_or_anatomy_outside_the_vocabulary_is_refused(grammar, text, error):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()
    assert error in intent.error


def test_a_what_question_without_a_where_word_is_answered_and_a_landmark_is_not_the_answer(full_parser):
    intent = full_parser.parse("what organ makes urine on the left side?")
    assert (intent.kind, intent.structure) == (K.WHERE, "kidney_left"), intent.describe()
    # the ribs place the organ asked for; answering "the right ribs" would highlight the wrong thing
    intent = full_parser.parse("which organ sits under the right ribs?")
    assert intent.structure != "ribs_right" and not intent.acts, intent.describe()


@pytest.mark.parametrize("text, kind, slots", [
    # the category a question asks about is no second structure; its "one" stands for it
    ("which bone is the left collarbone?", K.WHERE, {"structure": "clavicula_left"}),
    ("which rib is the lowest one on the left?", K.WHERE, {"structure": "rib_left_12"}),
    ("what bone is the femur", K.WHERE, {"structure": "femurs"}),
    # an image asked for with get/grab is an exposure
    ("get me an image", K.ACQUIRE, {}),
    ("grab a picture please", K.ACQUIRE, {}),
    # "a touch" is a small amount, not an unexplained word; "open ... a bit" widens, it does not
    # remove the collimation
    ("bring the collimator leaves out a touch", K.COLLIMATE, {"direction": "wider"}),
    ("open the collimator a bit", K.COLLIMATE, {"direction": "wider"}),
    ("open the collimator", K.COLLIMATE, {"direction": "open"}),
])
def test_forms_the_independent_set_still_missed(grammar, text, kind, slots):
    """The independent set's last misses after session 16 (each failed before session 17)."""
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


@pytest.mark.parametrize("text, kind, slots", [
    # an oblique, inlet or outlet keeps its angle: dropped, the C-arm went to the default 30 deg
    ("show the heart in LAO 45", K.SHOW, {"structure": "heart", "view": "oblique_left", "amount": 45.0, "unit": "deg"}),
    ("give me a 20 degree RAO of the spine", K.SHOW,
     {"structure": "spine", "view": "oblique_right", "amount": 20.0, "unit": "deg"}),
    ("oblique left 30\u00b0 on the right hip", K.SHOW,
     {"structure": "hip_right", "view": "oblique_left", "amount": 30.0, "unit": "deg"}),
    ("show the pelvis inlet 25 degrees", K.SHOW, {"structure": "pelvis", "view": "inlet", "amount": 25.0, "unit": "deg"}),
    ("show the heart lao", K.SHOW, {"structure": "heart", "view": "oblique_left"}),
    ("show the heart in LAO 30 mm", K.NOT_UNDERSTOOD, {}),                 # a distance is no view angle
    # the patient's side, where the image shows it, centring, the radiation field, blades
    ("uh, I'd like to see the patient's left clavicle", K.SHOW, {"structure": "clavicula_left"}),
    ("okay, uh, the shoulder blade on the patient's left", K.SHOW, {"structure": "scapula_left"}),
    ("okay, can we get the left femur up on the screen", K.SHOW, {"structure": "femur_left"}),
    ("right common iliac artery in the middle please", K.SHOW, {"structure": "iliac_artery_right"}),
    ("narrow the field to the heart", K.COLLIMATE, {"structure": "heart"}),
    ("restrict the field to the liver", K.COLLIMATE, {"structure": "liver"}),
    ("narrow the field", K.COLLIMATE, {"direction": "tighter"}),
    ("open up the blades fully", K.COLLIMATE, {"direction": "open"}),
    ("swing round to a lateral of L5", K.SHOW, {"structure": "vertebrae_L5", "view": "lateral"}),
    ("can you pick out the SVC", K.WHERE, {"structure": "superior_vena_cava"}),
    ("where's the IM nail sitting?", K.WHERE, {"structure": "intramedullary_nail"}),
    ("let's see the cyst in the left kidney", K.SHOW, {"structure": "kidney_cyst_left"}),
    ("scratch that", K.UNDO, {}),
    ("never mind, go back", K.UNDO, {}),
    # typed shorthand
    ("rot L 12 deg", K.ROTATE, {"direction": "left", "amount": 12.0, "unit": "deg"}),
    ("show R femur AP", K.SHOW, {"structure": "femur_right", "view": "ap"}),
    ("show R rib 3", K.SHOW, {"structure": "rib_right_3"}),
    ("cone in on the L-spine", K.COLLIMATE, {"structure": "lumbar_vertebrae"}),
    ("show me L 5", K.SHOW, {"structure": "vertebrae_L5"}),
    # an amount lost behind a hesitation, or its number lost before its unit
    ("tilt caudal by uh", K.NOT_UNDERSTOOD, {}),
    ("rotate to the right by, uh, degrees", K.NOT_UNDERSTOOD, {}),
    # the second round (C: non-native speakers, a British radiographer; D: a voice assistant)
    ("make the picture of right humerus please", K.SHOW, {"structure": "humerus_right"}),
    ("make inlet of pelvis with 25 grade", K.SHOW, {"structure": "pelvis", "view": "inlet", "amount": 25.0,
                                                    "unit": "deg"}),
    ("go 2,5 cm to the head", K.MOVE, {"direction": "cranial", "amount": 25.0, "unit": "mm"}),
    ("rotate left 7,5 degrees", K.ROTATE, {"direction": "left", "amount": 7.5, "unit": "deg"}),
    ("caudal one and half centimetre", K.MOVE, {"direction": "caudal", "amount": 15.0, "unit": "mm"}),
    ("move in a centimetre and a half", K.MOVE, {"direction": "in", "amount": 15.0, "unit": "mm"}),
    ("the image go in direction of the feet", K.MOVE, {"direction": "caudal"}),
    ("inclinate caudal 20 degrees please", K.TILT, {"direction": "caudal", "amount": 20.0, "unit": "deg"}),
    ("you can shoot, please", K.ACQUIRE, {}),
    ("screen the left hip", K.SHOW, {"structure": "hip_left"}),
    ("let's screen", K.ACQUIRE, {}),
    ("pop a shot off", K.ACQUIRE, {}),
    ("give us a lateral", K.SHOW, {"view": "lateral"}),
    ("line up on the pedicle screw", K.SHOW, {"structure": "screw"}),
    ("tighten up on the L4", K.COLLIMATE, {"structure": "vertebrae_L4"}),
    ("mag up", K.ZOOM, {"direction": "in"}),
    ("take the mag off", K.ZOOM, {"direction": "out"}),
    ("come up a touch", K.MOVE, {"direction": "up"}),
    ("that's enough, hold there", K.STOP, {}),
    ("go back to where you were", K.UNDO, {}),
    ("take that last move back", K.UNDO, {}),
    ("point me the gallbladder on the image", K.WHERE, {"structure": "gallbladder"}),
    ("left rib number four, please show", K.SHOW, {"structure": "rib_left_4"}),
    ("computer, oblique right 25 degrees of L1", K.SHOW, {"structure": "vertebrae_L1", "view": "oblique_right",
                                                         "amount": 25.0, "unit": "deg"}),
    ("hey c-arm, centre on the sacrum", K.SHOW, {"structure": "sacrum"}),
    ("show me the axis, please", K.SHOW, {"structure": "vertebrae_C2"}),
    ("C-arm: LAO 45", K.SHOW, {"view": "oblique_left", "amount": 45.0, "unit": "deg"}),   # a position
    ("rotate LAO 20", K.ROTATE, {"direction": "left", "amount": 20.0, "unit": "deg"}),     # a turn
])
def test_forms_session_18s_held_out_sets_missed(grammar, text, kind, slots):
    """First contact with two new held-out sets (471 commands written blind to the parser): 94.6 %
    and 93.9 %, one false action ("tilt caudal by uh" tilted by the default step). Each of these
    failed before session 18."""
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


@pytest.mark.parametrize("text", ["the field is clear", "keep the liver out of the field", "the patient's left arm hurts",
                                  "never mind", "the blades are sharp", "you can see the liver here",
                                  "rotate around the axis", "show the axis of rotation", "fluoro is broken again",
                                  "move left 1,000 mm", "the screen is too dark", "come in please",
                                  "come out of there", "come down to theatre 3"])
def test_the_rewritten_phrasings_leave_talk_alone(grammar, text):
    assert not grammar.parse(text).acts, grammar.parse(text).describe()


@pytest.mark.parametrize("text, structure", [
    ("what's the big bone in the thigh?", "femurs"),          # a description without a side: both
    ("could you show me where the bladder is", "urinary_bladder"),   # not traded for a description
])
def test_questions_the_held_out_sets_answered_wrongly(full_parser, text, structure):
    intent = full_parser.parse(text)
    assert intent.kind == K.WHERE and intent.structure == structure, intent.describe()


@pytest.mark.parametrize("text", ["did you get an image", "we need to get an image of this later"])
def test_an_image_only_mentioned_is_no_exposure(grammar, text):
    assert not grammar.parse(text).acts


def test_a_category_question_with_a_landmark_is_not_answered_by_the_landmark(full_parser):
    intent = full_parser.parse("which bone is next to the hip?")
    assert intent.kind == K.WHERE and intent.structure not in ("hip_left", "hip_right", "hips"), intent.describe()


def test_a_question_may_still_use_anatomy_outside_the_vocabulary_as_a_landmark(full_parser):
    intent = full_parser.parse("which bone is just above the knee?")
    assert intent.kind == K.WHERE and intent.structure.startswith("femur"), intent.describe()


def test_unknown_anatomy_offers_spelling_neighbours(grammar):
    intent = grammar.parse("show me the left femor")
    # "femor" is no vocabulary word; "left" alone names nothing
    assert intent.kind == K.NOT_UNDERSTOOD
    assert any("fem" in c for c in intent.candidates)


def test_low_confidence_motion_is_refused_but_reported():
    parser = CommandParser(config=ParserConfig(use_embeddings=False, motion_threshold=0.95))
    intent = parser.parse("left femur")          # a bare structure is a cautious show (0.8)
    assert intent.kind == K.NOT_UNDERSTOOD and "below" in intent.error
    assert intent.candidates and "femur_left" in intent.candidates[0]


def test_numbers_in_words_and_digits():
    assert words_to_digits("twenty five".split()) == ["25"]
    assert words_to_digits("one hundred and twenty".split()) == ["120"]
    assert words_to_digits("two point five".split()) == ["2.5"]
    assert words_to_digits("one and a half".split()) == ["1.5"]
    assert words_to_digits("three four".split()) == ["3", "4"]       # two numbers, not 7
    assert normalize_command("tilt 15° cranial") == ["tilt", "15", "degrees", "cranial"]
    assert normalize_command("20mm") == ["20", "mm"]
    assert normalize_command("fifth rib") == ["fifth", "rib"]       # ordinals stay words
    assert normalize_command("Don't move") == ["do", "not", "move"]


def test_intent_kinds_match_the_message_constants():
    from pathlib import Path

    msg = (Path(__file__).resolve().parents[2] / "msg" / "Intent.msg").read_text()
    for kind in K.KINDS:
        assert f"={kind}\n" in msg
    assert K.ACTION_KINDS == K.MOTION_KINDS | {K.ACQUIRE}
    assert not ({K.STOP, K.WHERE, K.NOT_UNDERSTOOD} & K.ACTION_KINDS)
    assert math.isnan(K.Intent(K.ACQUIRE).amount)
    with pytest.raises(ValueError):
        K.Intent("jump")


def test_the_fallback_examples_agree_with_the_grammar(grammar):
    """The embedding fallback's example phrasings must not teach it a different reading than
    the grammar gives the same words (where the grammar reads them at all)."""
    for label, texts in EXAMPLES.items():
        kind = label.partition(":")[0]
        for text in texts:
            intent = grammar.parse(text)
            assert intent.kind in (kind, K.NOT_UNDERSTOOD), (text, intent.describe())


@pytest.fixture(scope="module")
def full_parser() -> CommandParser:
    parser = CommandParser()
    parser.warm_up()
    return parser


@pytest.mark.parametrize("text, structure", [
    ("which bone is in the left thigh?", "femur_left"),
    ("what's the bone next to the hip?", "femurs"),
    ("which organ makes urine on the right side of the spine?", "kidney_right"),
    ("what is the tube carrying air to the lungs?", "trachea"),
])
def test_questions_are_answered_by_the_description_bank_without_motion(full_parser, text, structure):
    intent = full_parser.parse(text)
    assert (intent.kind, intent.structure) == (K.WHERE, structure), intent.describe()
    assert intent.method == "embedding" and not intent.moves


@pytest.mark.parametrize("text", ["what a nice day outside", "I think we should order lunch",
                                  "is the patient comfortable", "turn the music down"])
def test_off_topic_talk_is_not_understood_with_the_encoder_either(full_parser, text):
    intent = full_parser.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()


@pytest.mark.parametrize("text, kind, slots", [
    # self-corrections (session 19's held-out sets)
    ("show me the left, no, right femur", K.SHOW, {"structure": "femur_right"}),
    ("L4, sorry, L5, lateral", K.SHOW, {"structure": "vertebrae_L5", "view": "lateral"}),
    ("show the right hip, wait, the left one", K.SHOW, {"structure": "hip_left"}),
    ("uh, move left, sorry, right, five millimetres", K.MOVE, {"direction": "right", "amount": 5.0, "unit": "mm"}),
    ("rotate twenty, no, thirty degrees left", K.ROTATE, {"direction": "left", "amount": 30.0, "unit": "deg"}),
    ("tilt cranial... um, caudal, ten degrees", K.TILT, {"direction": "caudal", "amount": 10.0, "unit": "deg"}),
    ("zoom in, no, zoom out", K.ZOOM, {"direction": "out"}),
    # typed shorthand, signs and slips
    ("mv L 5mm", K.MOVE, {"direction": "left", "amount": 5.0, "unit": "mm"}),
    ("tilt cran 15deg", K.TILT, {"direction": "cranial", "amount": 15.0, "unit": "deg"}),
    ("zoom+", K.ZOOM, {"direction": "in"}),
    ("zoom -", K.ZOOM, {"direction": "out"}),
    ("acq", K.ACQUIRE, {}),
    ("shwo sacrum ap", K.SHOW, {"structure": "sacrum", "view": "ap"}),
    ("rotaet left 5 deg", K.ROTATE, {"direction": "left", "amount": 5.0, "unit": "deg"}),
    ("colimate tighter", K.COLLIMATE, {"direction": "tighter"}),
    # indirect requests and the words around them
    ("light up the bladder for me", K.WHERE, {"structure": "urinary_bladder"}),
    ("would you mind moving down twenty millimetres", K.MOVE, {"direction": "down", "amount": 20.0, "unit": "mm"}),
    ("would you mind tilting cranially by twelve degrees", K.TILT, {"direction": "cranial", "amount": 12.0, "unit": "deg"}),
    ("I think we need to see the left hip", K.SHOW, {"structure": "hip_left"}),
    ("could we possibly have the right femur", K.SHOW, {"structure": "femur_right"}),
    ("let's have the carotids", K.SHOW, {"structure": "common_carotid_arteries"}),
    ("lumbar three, if you would", K.SHOW, {"structure": "vertebrae_L3"}),
    ("straight PA", K.SHOW, {"view": "pa"}),
    ("grab a quick fluoro", K.ACQUIRE, {}),
    ("x-ray please", K.ACQUIRE, {}),
    ("that was better before, put it back", K.UNDO, {}),
    ("shift right a few mil", K.MOVE, {"direction": "right"}),     # a vague amount: the default step
    ("uh, bit more right", K.MOVE, {"direction": "right"}),
    ("outline the liver without moving anything", K.WHERE, {"structure": "liver"}),
    ("Move up a quarter of a centimetre.", K.MOVE, {"direction": "up", "amount": 2.5, "unit": "mm"}),
    ("move caudad three quarters of a centimetre", K.MOVE, {"direction": "caudal", "amount": 7.5, "unit": "mm"}),
    ("I want the pedicle of L3 dead centre", K.SHOW, {"structure": "vertebrae_L3"}),
    ("put the T10 spinous process in the middle of the screen", K.SHOW, {"structure": "vertebrae_T10"}),
    ("give me l a o thirty", K.SHOW, {"view": "oblique_left", "amount": 30.0, "unit": "deg"}),
    ("take it out of mag", K.ZOOM, {"direction": "out"}),
    ("open the iris", K.COLLIMATE, {"direction": "open"}),
    ("give me a picture", K.ACQUIRE, {}),
    ("live fluoro while I advance the wire", K.ACQUIRE, {}),
    ("no, that's worse, go back", K.UNDO, {}),
    ("hang on, hang on", K.STOP, {}),
    ("localise the L2 vertebra", K.WHERE, {"structure": "vertebrae_L2"}),
    ("revert to the previous pose", K.UNDO, {}),
    ("shift towards leg side by two centimetres", K.MOVE, {"direction": "caudal", "amount": 20.0, "unit": "mm"}),
    ("gently rotate towards his left, about ten degrees", K.ROTATE, {"direction": "left", "amount": 10.0, "unit": "deg"}),
    ("centre on the distal oesophagus", K.SHOW, {"structure": "esophagus"}),
    ("collimate to the left subclavian", K.COLLIMATE, {"structure": "subclavian_artery_left"}),
    ("show the left kidney without moving the arm", K.WHERE, {"structure": "kidney_left"}),
])
def test_forms_session_19s_held_out_sets_missed(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert intent.kind == kind, intent.describe()
    assert {k: v for k, v in intent.slots().items()} == slots


@pytest.mark.parametrize("text, error", [
    ("rotate twenty, uh, five degrees left", "two numbers"),   # 20, 25 or 5: not guessed
    ("tilt caudal 10 15 degrees", "two numbers"),
    ("rotate left without moving", "asked not to move"),
    ("the retractor please", "staff"),                          # a tool alone is asked of the staff
    ("move the table up", "table"),                             # the table is not the C-arm
    ("can you raise the table ten centimetres?", "table"),
    ("lower the bed a bit, please", "table"),
    ("rotate the patient a little onto their left side", "patient"),
    ("let's look at L4-5", "two levels"),                      # the disc between them, not one vertebra
    ("can I have the K-wire please", "staff"),
])
def test_an_ambiguous_amount_a_motion_asked_not_to_move_or_a_tool_alone_is_refused(grammar, text, error):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()
    assert error in intent.error


@pytest.mark.parametrize("text", [
    "I can't stop thinking about lunch", "stop by my office after the case", "it's been non-stop all day",
    "did the bleeding stop?", "the bus stop outside is flooded again",
    "the stop on the drill guide is set at forty millimetres", "can we stop the bleeding first",
    "let's stop for coffee after this case", "that's a nice shot of the sacrum",
])
def test_other_senses_of_stop_are_not_a_stop(grammar, text):
    assert grammar.parse(text).kind == K.NOT_UNDERSTOOD


@pytest.mark.parametrize("text", [
    "stop", "stop now", "please stop", "full stop", "stop moving", "did it stop", "stop by now",
    "hit the stop", "don't stop",          # ambiguous in a hurry: a needless stop costs a moment
    "move left, no, stop", "show the left, sorry, stop", "wait wait, the right femur",
])
def test_a_stop_still_wins(grammar, text):
    assert grammar.parse(text).kind == K.STOP


def test_a_spoken_view_alone_with_a_word_left_over_is_refused_but_typed_is_not(grammar):
    # "take a look at the eyebrow" heard "take a look at the RAO": the view name made from talk
    spoken = grammar.parse("take a look at the rao", source="speech")
    assert spoken.kind == K.NOT_UNDERSTOOD and "could not place" in spoken.error
    assert grammar.parse("give me the rao", source="speech").kind == K.SHOW
    assert grammar.parse("take a look at the RAO").kind == K.SHOW


def test_a_reason_after_the_request_is_not_part_of_it(grammar):
    # "I've" opens to "i have" like the other contractions
    intent = grammar.parse("zoom out a bit, I've lost the tip")
    assert intent.kind == K.ZOOM and intent.direction == "out"
    assert grammar.parse("I've lost the tip").kind == K.NOT_UNDERSTOOD


@pytest.mark.parametrize("text", ["zoom out, I cannot see, stop", "that is a nice shot, stop",
                                  "move left while I stop the drill"])
def test_a_stop_in_a_clause_that_rewrites_drop_still_stops(grammar, text):
    assert grammar.parse(text).kind == K.STOP


def test_a_clause_about_what_the_speaker_does_meanwhile_is_not_part_of_the_request(grammar):
    intent = grammar.parse("move left 5 mm while I drill")
    assert (intent.kind, intent.direction, intent.amount) == (K.MOVE, "left", 5.0)
    assert grammar.parse("table left 5 mm").kind == K.NOT_UNDERSTOOD


@pytest.mark.parametrize("text, kind, slots", [
    # session 19's third round (I: second-language calques, key=value input; J: numbers, compounds)
    ("make a radiography of the pelvis", K.SHOW, {"structure": "pelvis"}),
    ("demonstrate me the pancreas", K.SHOW, {"structure": "pancreas"}),
    ("show structure=liver view=lateral", K.SHOW, {"structure": "liver", "view": "lateral"}),
    ("move direction=left amount=5 unit=mm", K.MOVE, {"direction": "left", "amount": 5.0, "unit": "mm"}),
    ("color the liver please", K.WHERE, {"structure": "liver"}),
    ("go in direction to the head two centimeter", K.MOVE, {"direction": "cranial", "amount": 20.0, "unit": "mm"}),
    ("go with the C-arm one centimeter to foot", K.MOVE, {"direction": "caudal", "amount": 10.0, "unit": "mm"}),
    ("make the zoom bigger", K.ZOOM, {"direction": "in"}),
    ("amplify the image", K.ZOOM, {"direction": "in"}),
    ("make the collimation more tight", K.COLLIMATE, {"direction": "tighter"}),
    ("make one picture please", K.ACQUIRE, {}),
    ("give me scopy", K.ACQUIRE, {}),
    ("undo the last movement", K.UNDO, {}),
    ("back to where we were before", K.UNDO, {}),
    ("move left 1/2 cm", K.MOVE, {"direction": "left", "amount": 5.0, "unit": "mm"}),
    ("move up an inch", K.MOVE, {"direction": "up", "amount": 25.4, "unit": "mm"}),
    ("line us up on the backbone", K.SHOW, {"structure": "spine"}),
    ("shoot, then go back", K.ACQUIRE, {}),                       # two in order: the first is done
    ("centre on L2 then fluoro", K.SHOW, {"structure": "vertebrae_L2"}),
])
def test_forms_session_19s_third_round_missed(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


def test_the_second_of_two_requests_is_said_back_as_not_done(grammar):
    intent = grammar.parse("centre on L2 then fluoro")
    assert intent.details["not_done"].startswith("acquire")
    assert "not done: acquire" in intent.describe()     # the /command/heard echo says so


@pytest.mark.parametrize("text, error", [
    ("show the left femur in AP and lateral", "two views"),
    ("hand me the drill", "staff"),
    ("I need the retractor", "staff"),
    ("show L4/5", "two levels"),
    ("rotate 5 inches left", "degrees"),
])
def test_two_views_a_tool_asked_for_or_a_turn_in_inches_is_refused(grammar, text, error):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()
    assert error in intent.error


@pytest.mark.parametrize("text, kind, slots", [
    # session 19's fourth round (K: the vocabulary's breadth; L: a recogniser's transcripts)
    ("show the axis vertebra", K.SHOW, {"structure": "vertebrae_C2"}),
    ("show gluteus maximus on both sides", K.SHOW, {"structure": "gluteus_maximus_muscles"}),
    ("show me the l u l", K.SHOW, {"structure": "lung_upper_lobe_left"}),
    ("show me the i v c", K.SHOW, {"structure": "inferior_vena_cava"}),
    ("show me the g i tract", K.SHOW, {"structure": "gastrointestinal_tract"}),
    ("take a p a view", K.SHOW, {"view": "pa"}),              # the article, then P A
    ("show me el four", K.SHOW, {"structure": "vertebrae_L4"}),
    ("centre on tea eleven", K.SHOW, {"structure": "vertebrae_T11"}),
    ("are a o thirty", K.SHOW, {"view": "oblique_right", "amount": 30.0, "unit": "deg"}),
    ("move write ten millimetres", K.MOVE, {"direction": "right", "amount": 10.0, "unit": "mm"}),
    ("tilt cordal fifteen degrees", K.TILT, {"direction": "caudal", "amount": 15.0, "unit": "deg"}),
    ("move down to centimetres", K.MOVE, {"direction": "down", "amount": 20.0, "unit": "mm"}),
])
def test_forms_session_19s_fourth_round_missed(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


@pytest.mark.parametrize("text, error", [
    ("move down centimetres", "without a number"),             # the number lost: not the default step
    ("lateral of seven please", "number I could not place"),   # a view does not drop a number
    ("highlight the right femoral artery", "cannot find"),     # not among the structures
    ("where is the hepatic vein", "cannot find"),
])
def test_a_lost_number_or_a_vessel_outside_the_vocabulary_is_refused(grammar, text, error):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()
    assert error in intent.error


@pytest.mark.parametrize("text, kind, slots", [
    # session 19's fifth round (M: safety traps around real requests; N: views and angles)
    ("okay fine, take the shot", K.ACQUIRE, {}),
    ("the wire looks good, take the shot", K.ACQUIRE, {}),
    ("okay, that AP looks good, now the lateral", K.SHOW, {"view": "lateral"}),
    ("right, go left ten millimetres", K.MOVE, {"direction": "left", "amount": 10.0, "unit": "mm"}),
    ("just mark the liver, no need to move", K.WHERE, {"structure": "liver"}),
    ("left lateral of the pelvis", K.SHOW, {"structure": "pelvis", "view": "lateral"}),
    ("swimmer's lateral of C7", K.SHOW, {"structure": "vertebrae_C7", "view": "lateral"}),
    ("oblique to the patient's left, twelve degrees", K.SHOW, {"view": "oblique_left", "amount": 12.0, "unit": "deg"}),
    ("rotate into a 20 degree RAO", K.SHOW, {"view": "oblique_right", "amount": 20.0, "unit": "deg"}),
    ("pelvic outlet at forty degrees", K.SHOW, {"structure": "pelvis", "view": "outlet", "amount": 40.0, "unit": "deg"}),
    ("AP with twenty degrees of cranial", K.SHOW, {"view": "cranial", "amount": 20.0, "unit": "deg"}),
    ("Ferguson view of the sacrum", K.SHOW, {"structure": "sacrum", "view": "cranial"}),
    ("ten more degrees to the left", K.ROTATE, {"direction": "left", "amount": 10.0, "unit": "deg"}),
    ("another five degrees caudal", K.TILT, {"direction": "caudal", "amount": 5.0, "unit": "deg"}),
    ("rotate left a few degrees", K.ROTATE, {"direction": "left"}),
    ("lower the column", K.MOVE, {"direction": "down"}),
    ("back the C-arm out a bit", K.MOVE, {"direction": "out"}),
    ("bring the leaves in", K.COLLIMATE, {"direction": "tighter"}),
])
def test_forms_session_19s_fifth_round_missed(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


@pytest.mark.parametrize("text, kind, slots", [
    ("lateral of the pelvis if you don't mind", K.SHOW, {"structure": "pelvis", "view": "lateral"}),
    ("collimate to the right kidney if you don't mind", K.COLLIMATE, {"structure": "kidney_right"}),
    ("rotate right by forty five if you don't mind", K.ROTATE, {"direction": "right", "amount": 45.0, "unit": "deg"}),
    ("right humerus, AP, in your own time", K.SHOW, {"structure": "humerus_right", "view": "ap"}),
    ("go on then, fire away", K.ACQUIRE, {}),                   # moved the C-arm out
    ("go on then, take a shot", K.ACQUIRE, {}),
    ("go on the screw, please", K.SHOW, {"structure": "screw"}),  # "go on" stays a verb here
    ("img acquire now", K.ACQUIRE, {}),                         # showed the intramedullary nail
    ("Undo the last command.", K.UNDO, {}),
    ("go back one step", K.UNDO, {}),
    ("take that back, undo it", K.UNDO, {}),
    ("undo the last move", K.UNDO, {}),
    ("where r the kidneys", K.WHERE, {"structure": "kidneys"}),     # read "r" as right: the right kidney
    ("show r femur AP", K.SHOW, {"structure": "femur_right", "view": "ap"}),
])
def test_forms_session_20s_held_out_sets_missed(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


@pytest.mark.parametrize("text", [
    "undo the tourniquet", "undo his gown",         # undid the last move
    "zoom in on the uterus",                        # zoomed in on anatomy it cannot find
    "stop talking please, I'm counting", "please stop the music",
    "if it's clear, take a shot",                   # "if" that is not politeness stays a condition
])
def test_session_20s_negatives_act_on_nothing(grammar, text):
    assert grammar.parse(text).kind == K.NOT_UNDERSTOOD


@pytest.mark.parametrize("text", [
    "is the beam on?",                                  # fired the beam
    "never mind the lateral", "skip the inlet view",    # turned to the view
    "zoom in and out",                                  # zoomed in
    "slide a bit lateral",                              # turned to a lateral view
    "if it looks good, take a shot",                    # a request for later
    "once the screw is in we need an AP",
    "the previous position of the screw was better",    # talk, not an undo
])
def test_session_19s_traps_never_act(grammar, text):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()


@pytest.mark.parametrize("text, kind, slots", [
    # autocorrect and dictation (set Q)
    ("show me the right demur", K.SHOW, {"structure": "femur_right"}),
    ("tilt causal 15 degrees", K.TILT, {"direction": "caudal", "amount": 15.0, "unit": "deg"}),
    ("tile cranial 10 degrees", K.TILT, {"direction": "cranial", "amount": 10.0, "unit": "deg"}),
    ("give me a literal of L1", K.SHOW, {"structure": "vertebrae_L1", "view": "lateral"}),   # showed L1 only
    ("show me the prostrate", K.SHOW, {"structure": "prostate"}),
    ("zoom inn", K.ZOOM, {"direction": "in"}),
    ("showme the gallbladder", K.SHOW, {"structure": "gallbladder"}),
    ("whereis the pancreas", K.WHERE, {"structure": "pancreas"}),
    ("moveleft 5mm", K.MOVE, {"direction": "left", "amount": 5.0, "unit": "mm"}),
    ("move right comma 10 millimetres period", K.MOVE, {"direction": "right", "amount": 10.0, "unit": "mm"}),
    ("the drill's in, fluoro please", K.ACQUIRE, {}),                                       # showed the drill
    # one request among typed clauses of talk
    ("the cement is going in now, so give me a lateral of T11", K.SHOW, {"structure": "vertebrae_T11",
                                                                         "view": "lateral"}),
    ("for the students watching, highlight the right kidney", K.WHERE, {"structure": "kidney_right"}),
    ("I can't see the endplates, tilt caudal 15 degrees please", K.TILT,
     {"direction": "caudal", "amount": 15.0, "unit": "deg"}),
    ("okay everyone, hands out of the field, shoot", K.ACQUIRE, {}),
    # numbering (set R)
    ("show me D12", K.SHOW, {"structure": "vertebrae_T12"}),
    ("the tenth dorsal vertebra", K.SHOW, {"structure": "vertebrae_T10"}),
    ("show ell one", K.SHOW, {"structure": "vertebrae_L1"}),
    ("show one level up from L4", K.SHOW, {"structure": "vertebrae_L3"}),
    ("go one level below L5", K.SHOW, {"structure": "vertebrae_S1"}),
    ("show me the level above T1", K.SHOW, {"structure": "vertebrae_C7"}),      # across regions
    ("collimate to two levels above L1", K.COLLIMATE, {"structure": "vertebrae_T11"}),
    ("where is the vertebra just below T12?", K.WHERE, {"structure": "vertebrae_L1"}),
    ("the rib under the left 5th", K.SHOW, {"structure": "rib_left_6"}),
    ("one rib above the right tenth", K.SHOW, {"structure": "rib_right_9"}),
    ("highlight the 12th rib on the left", K.WHERE, {"structure": "rib_left_12"}),
    ("move left 2 metres", K.MOVE, {"direction": "left", "amount": 2000.0, "unit": "mm"}),   # the limits refuse it
])
def test_forms_session_21s_held_out_sets_missed(grammar, text, kind, slots):
    intent = grammar.parse(text)
    assert intent.kind == kind and intent.slots() == slots, intent.describe()


@pytest.mark.parametrize("text", [
    "show rib 7",                                   # showed all the ribs
    "show the level above C1", "go up a level", "one level down",   # no level to count from
    "shoot, I dropped the wire",                    # an exclamation, then what happened
    "take a picture, it'll last longer",
    "not yet, take a shot",
    "he said, move left 5 mm",
    "before we close, show me the left hip",
    "good, that's a nice AP of the pelvis",         # a comment on the image
    "Fluoroscopy time, 42 seconds.",
    "rotate the patient's head to the left a bit, Tom",
    "the wire is in the femur",                     # a report, not "show the femur"
    "rotate left 2 metres",
])
def test_session_21s_negatives_act_on_nothing(grammar, text):
    intent = grammar.parse(text)
    assert intent.kind == K.NOT_UNDERSTOOD and not intent.acts, intent.describe()


def test_out_a_bit_then_zoom_is_not_read_as_a_move(grammar):
    # two clauses of one request: the clause reading must not pick "out a bit" alone
    assert grammar.parse("out a bit, zoom").kind != K.MOVE


def test_the_embedding_fallback_never_trades_a_named_level_for_another(full_parser):
    intent = full_parser.parse("to count levels, highlight the 12th rib on the left")
    assert intent.structure in ("", "rib_left_12"), intent.describe()
