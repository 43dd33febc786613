//! Whether a caller's turn names harm or fraud: the corroboration a fraud or
//! emergency report needs when the `fraud_emergency` head is only fairly sure.
//!
//! The head reads the *shape* of a report well ("someone …, I didn't …, it's
//! happening now"), so a routine problem told the same way ("someone went
//! into the back of me at the lights, nobody's hurt, I need to claim", "your
//! site is a total mess", "I can't add her as a user") scores as high as a
//! calm report of a gas leak. Above [`SURE`] the head alone decides; between
//! its threshold and [`SURE`] the turn must also name what makes it critical
//! (R2 of docs/POLICY.md): money or an account used without the caller, an
//! identity taken, or danger to a person (injury, hazard, violence, a missing
//! or unresponsive person, the emergency services). Injury that is denied
//! ("nobody's hurt") does not count. Sans-IO, no state.

use regex::Regex;
use std::sync::LazyLock;

/// A `fraud_emergency` score at or above this is a report without further
/// evidence (measured: ordinary turns the head scored above its threshold
/// all fell below it but one, true reports have a median of 0.93).
pub(crate) const SURE: f32 = 0.85;

/// Money, accounts or identity used without the caller.
const FRAUD: &str = r"(?x)
    \b(didn'?t|did\ not|never|haven'?t|have\ not|hadn'?t|wasn'?t|was\ not)\ (\w+\ ){0,2}?
        (make|made|authori[sz]ed?|buy|bought|order(ed)?|spend|spent|sign(ed)?|open(ed)?|
         take\ out|took\ out|taken\ out|appl(y|ied)|request(ed)?|agree(d)?|withdr[ae]w|
         send|sent|transfer(red)?|do|done|did|set\ up|pay|paid|book(ed)?)\b
  | \bunauthori[sz]ed | \bnot\ authori[sz]ed | without\ (my\ )?(permission|consent|knowledge|authori[sz]ation)
  | \b(wasn'?t|was\ not|it'?s\ not|isn'?t|not)\ me\b | \bnot\ mine\b
  | \bdon'?t\ recogni[sz]e | \bnever\ heard\ of | \bin\ my\ name\b
  | \b(haven'?t|have\ not|never|wasn'?t|was\ not)\ (even\ )?been\ (to|in|near)\b | \bi\ was\ asleep
  | \bhack | \bgot\ into\ (my|our) | \bbroke\ into | \btaken\ over | \blocked\ (me|us)\ out
  | changed\ (my|our)\ (password|email|e-mail|details|number|address|pin)
  | \bstole | \bstolen | \bnicked | \bskimm | \bclon(ed|ing) | \bscam | \bfraud | \bphish
  | \bidentity | \bimpersonat | \bconned\b
  | \b(emptied|drained|cleared\ out|wiped\ out)
  | \b(someone|somebody|they|he|she)('s|\ has|\ have|\ is|\ are)?\ (been\ )?
        (using|used|spending|spent|taking|took|taken|withdrawing|withdrew|accessed|accessing|logged|logging)\b
";

/// Danger to a person, now.
const HARM: &str = r"(?x)
    \bgas\b | \bsmoke | \bfire\b | \bflames? | \bburning | \bspark | \belectric | \blive\ wire
  | \bwires?\b | \bcables?\b | \bcarbon\ monoxide | \bexplo | \bfumes
  | \b(water|rain)\b[^.]{0,50}\b(lights?|sockets?|fuse|fuses|electrics|switch|switches|wiring|plugs?)\b
  | \b(lights?|sockets?|fuse\ box|electrics|wiring|plugs?)\b[^.]{0,40}\b(water|wet|soaked|dripping)\b
  | \bknife | \bknives | \bgun\b | \bweapon | \battack | \bassault | \bthreaten | \bviolen
  | \bintruder | \bbreaking\ in | \bbroken\ in | \bstalk | \bpunch | \bhit\ (me|him|her|them|us)\b
  | \binjur | \bhurt\b | \bbleed | \bblood | \bunconscious | \bunresponsive
  | (not|n't)\ (answering|responding|moving|breathing|waking)
  | \bbreath | \bchest | \bcollaps | \bfaint | \bpassed\ out | \bon\ the\ floor | \bfallen\b | \bfell\b
  | \b(ate|eaten|drunk|drank|swallowed|taken)\b[^.]{0,40}\b(tablets|pills|bleach|medicine|chemicals|batteries|detergent|capsules)
  | \bswallow | \boverdose | \bpoison | \bswell | \bswollen | \bthroat | \ballerg | \banaphyla
  | \bseizure | \bstroke\b | \bheart\ attack | \bchok | \bscald | \bburnt\b | \bburned\b
  | \bhead\ injury | \bhit\ (his|her|my|their)\ head | \bin\ (agony|pain)
  | \b(son|daughter|child|children|kids?|boy|girl|baby|toddler|mum|mother|dad|father|husband|wife|partner|nan|gran|grandad|grandma|grandpa|brother|sister|he|she)\b[^.?!]{0,25}\bmissing\b
  | \bmissing\ (person|child) | \bnobody\ knows\ where | \bno\ one\ knows\ where | can'?t\ find\ (my|her|him|them|our)
  | (hasn'?t|didn'?t|not)\ come\ home
  | \bsuicid | \bkill\ (my|him|her|them)sel | \bend\ (it\ all|my\ life) | \bself.?harm
  | \bambulance | \b999\b | \b911\b | \bparamedic | \bpolice\b | \bemergency
  | \bdanger | \bunsafe | \bnot\ safe | \bscared\ for | \bterrified | \bat\ risk
";

/// Harm or fraud denied: "nobody's hurt", "no one was injured", "there's
/// nothing on there I don't recognise", "no unusual payments".
const DENIED: &str = r"(?x)
    \b(nobody|no\ one|no-one|noone|none\ of\ us)('s|\ is|\ was|\ got|\ has\ been|\ were)?\ (hurt|injured)
  | \b(not|isn'?t|wasn'?t|aren'?t|weren'?t)\ (hurt|injured)
  | \bno\ injur\w* | \beveryone('s|\ is)\ (fine|ok|okay|alright|all\ right)
  | \bnothing\b[^.?!]{0,30}\b(i\ )?(don'?t|didn'?t)\ (recogni[sz]e|make|authori[sz]e)
  | \bno\ (strange|unusual|odd|dodgy|unknown|suspicious|new|other)\ (charges?|payments?|transactions?|activity|logins?)
  | \bnothing('s|\ has\ been|\ was|\ is)?\ (missing|taken|gone|been\ taken|been\ spent)
  | \b(nobody|no\ one|no-one|noone)('s|\ has|\ had)?\ (hacked|stolen|taken|used|accessed|touched)
  | \b(not|never|hasn'?t|has\ not|wasn'?t|haven'?t)\ (been\ )?(hacked|stolen|compromised)((,|\ or|\ and)\ (hacked|stolen|compromised))*
";

static FRAUD_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(FRAUD).ok());
static HARM_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(HARM).ok());
static DENIED_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(DENIED).ok());

/// Whether `text` names fraud or danger to a person (see the module).
pub(crate) fn names_harm_or_fraud(text: &str) -> bool {
    let lower = text.to_lowercase().replace(['’', '‘'], "'");
    let lower = match DENIED_RE.as_ref() {
        Some(denied) => denied.replace_all(&lower, " ").into_owned(),
        None => lower,
    };
    // A pattern that failed to build must not silence reports: count as named.
    let hit = |re: &Option<Regex>| re.as_ref().is_none_or(|re| re.is_match(&lower));
    hit(&FRAUD_RE) || hit(&HARM_RE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_build() {
        assert!(FRAUD_RE.is_some() && HARM_RE.is_some() && DENIED_RE.is_some());
    }

    #[test]
    fn reports_of_fraud_or_danger_name_it() {
        for report in [
            "There are two withdrawals from a cash machine in Leeds and I haven't been to Leeds in years",
            "someone has been using my online banking, there are transfers I never made",
            "I just got a letter about a loan I never applied for",
            "my email's been changed and I can't log in, it wasn't me",
            "a charge from some website I don't recognise, forty pounds",
            "My wife's fallen down the stairs and she isn't moving",
            "there's smoke coming out of the meter cupboard",
            "rain is coming in round the bathroom light and dripping off the pull cord",
            "my son has eaten some of the dishwasher tablets",
            "Her lips are going blue and she's wheezing, her breathing is wrong",
            "a man is outside with a baseball bat threatening my neighbour",
            "My mum has dementia and she's gone missing from the care home",
            "the boiler is making a funny smell and I've got a headache, the CO alarm is going off — carbon monoxide?",
            "I'm being followed home every night by your installer, I'm scared for my safety",
        ] {
            assert!(names_harm_or_fraud(report), "{report}");
        }
    }

    #[test]
    fn routine_problems_told_strongly_do_not() {
        for routine in [
            "I've been on hold for forty minutes and your app is a total joke",
            "My order came with the wrong size and I need to swap it",
            "A lorry clipped my wing mirror on the motorway, nobody was hurt, I want to make a claim",
            "Can you tell me my balance and when my salary clears?",
            "The invoice went up by thirty percent, are you kidding me?",
            "We've moved house and I need to change the address on the policy",
            "No one was injured, the fence just needs replacing",
            "I've left my card in a taxi; I looked and there's nothing on the app I don't recognise",
            "My purse went missing at the gym but there are no unusual payments on the account",
        ] {
            assert!(!names_harm_or_fraud(routine), "{routine}");
        }
    }
}
