//! The answer after the final dot (routing::outcome): every combination of
//! next-hop verdicts, PRDR on and off, a null sender or not, NOTIFY wishes
//! and the notification's own fate, checked against the guarantees — and
//! the wording of each kind of answer.

use proptest::prelude::*;
use routing::outcome::*;

/// What a next hop did with the message, as the relay hands it to `decide`.
#[derive(Clone, Copy, Debug)]
enum Said {
    Ok,
    Temporary,
    Permanent,
    /// The connection was lost or timed out: the relay's own 4xx.
    Lost,
}

fn answer(said: Said) -> Answer {
    match said {
        Said::Ok => Answer::new(250, [2, 0, 0], "Ok: queued as 4XyZ"),
        Said::Temporary => Answer::new(451, [4, 3, 0], "Try again later"),
        Said::Permanent => Answer::new(554, [5, 7, 1], "Content refused"),
        Said::Lost => Answer::new(
            451,
            [4, 4, 2],
            "Connection to the next hop lost; try again later",
        ),
    }
}

const NAMES: [&str; 4] = [
    "SmtpConnector/mbx1",
    "SmtpConnector/partner",
    "SmtpConnector/internet",
    "SmtpConnector/d",
];
const ADDRESSES: [&str; 5] = [
    "ann@example.com",
    "bob@example.com",
    "cy@example.com",
    "dee@example.com",
    "eve@example.com",
];

/// One case: the hops' answers, each recipient's hop and NOTIFY wish.
struct Case {
    answers: Vec<Answer>,
    recipients: Vec<(usize, bool)>,
    prdr: bool,
    null_sender: bool,
}

impl Case {
    /// Decides once, and checks the guarantees for each fate of a
    /// notification.
    fn check(&self, notifications: &[Answer]) {
        let hops: Vec<Hop> = self
            .answers
            .iter()
            .enumerate()
            .map(|(i, a)| Hop {
                name: NAMES[i],
                answer: a,
            })
            .collect();
        let recipients: Vec<Recipient> = self
            .recipients
            .iter()
            .enumerate()
            .map(|(i, &(hop, notify_failure))| Recipient {
                address: ADDRESSES[i],
                hop,
                notify_failure,
            })
            .collect();
        let tx = Transaction {
            hops: &hops,
            recipients: &recipients,
            prdr: self.prdr,
            null_sender: self.null_sender,
        };
        let verdict = decide(&tx);
        assert_eq!(verdict, decide(&tx), "deterministic");
        for notification in notifications {
            guarantees(&tx, &verdict, notification);
        }
    }
}

/// What each recipient was told, the reply for the message as a whole, and
/// the recipients a notification was sent for.
fn told(verdict: &Verdict, n: usize, notification: &Answer) -> (Vec<Answer>, Answer, Vec<usize>) {
    match verdict {
        Verdict::Reply(a, _) => (vec![a.clone(); n], a.clone(), vec![]),
        Verdict::PerRecipient { replies, last } => (replies.clone(), last.clone(), vec![]),
        Verdict::NotifyFirst(notify) => {
            let (a, _) = notify.answer(notification);
            let sent = if notification.class() == Class::Accepted {
                notify.failed.clone()
            } else {
                vec![]
            };
            (vec![a.clone(); n], a, sent)
        }
    }
}

fn well_formed(a: &Answer) {
    assert!((200..600).contains(&a.code), "{a:?}");
    assert_eq!(a.enhanced[0] as u16, a.code / 100, "{a:?}");
    assert!(!a.text.contains(['\r', '\n']), "{a:?}");
    assert!(a.display().len() < 512, "{a:?}");
}

fn guarantees(tx: &Transaction, verdict: &Verdict, notification: &Answer) {
    let n = tx.recipients.len();
    let class_of = |i: usize| tx.hops[tx.recipients[i].hop].answer.class();
    let (each, whole, notified) = told(verdict, n, notification);
    well_formed(&whole);
    each.iter().for_each(well_formed);
    let any_deferred = (0..n).any(|i| class_of(i) == Class::Deferred);

    // Nothing is lost: 2xx for a recipient only when its next hop accepted,
    // or it refused permanently and the sender is notified or needs no notice.
    for (i, a) in each.iter().enumerate() {
        if a.class() != Class::Accepted {
            continue;
        }
        match class_of(i) {
            Class::Accepted => {}
            Class::Deferred => panic!("{i} deferred but told 2xx: {verdict:?}"),
            Class::Refused => assert!(
                notified.contains(&i) || tx.null_sender || !tx.recipients[i].notify_failure,
                "{i} refused, told 2xx, not notified: {verdict:?}"
            ),
        }
    }
    // Notifications: never for <>, never with PRDR, only for refused
    // recipients, and for every refused one that wants it.
    if let Verdict::NotifyFirst(notify) = verdict {
        assert!(!tx.null_sender && !tx.prdr, "{verdict:?}");
        for i in 0..n {
            let wanted = class_of(i) == Class::Refused && tx.recipients[i].notify_failure;
            assert_eq!(notify.failed.contains(&i), wanted, "{i}: {verdict:?}");
        }
    }
    // A permanent refusal never makes the client retry by itself.
    let notification_deferred =
        matches!(verdict, Verdict::NotifyFirst(_)) && notification.class() == Class::Deferred;
    if whole.class() == Class::Deferred {
        assert!(any_deferred || notification_deferred, "{verdict:?}");
    }
    // Uniform verdicts give one reply of that class.
    let first = class_of(0);
    if (0..n).all(|i| class_of(i) == first) {
        let Verdict::Reply(a, _) = verdict else {
            panic!("uniform, yet {verdict:?}")
        };
        assert_eq!(a.class(), first);
        if first == Class::Accepted {
            assert_eq!(a.code, 250);
        } else {
            // One of the next hops' replies, naming which when there are several.
            assert!(
                tx.hops
                    .iter()
                    .any(|h| h.answer.code == a.code && h.answer.enhanced == a.enhanced)
            );
            let hops: std::collections::BTreeSet<usize> =
                tx.recipients.iter().map(|r| r.hop).collect();
            if hops.len() > 1 {
                assert!(tx.hops.iter().any(|h| a.text.contains(h.name)), "{a:?}");
            }
        }
    }
    // PRDR: each recipient its own next hop's class; the last reply 2xx
    // exactly when one was accepted, and never a 5xx over a 4xx recipient.
    if let Verdict::PerRecipient { replies, last } = verdict {
        assert!(tx.prdr);
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(r.class(), class_of(i), "{verdict:?}");
            assert!(r.text.contains(tx.recipients[i].address));
        }
        let any_accepted = replies.iter().any(|r| r.class() == Class::Accepted);
        assert_eq!(last.class() == Class::Accepted, any_accepted);
        if any_deferred {
            assert_ne!(last.class(), Class::Refused);
        }
    }
    // Duplicates are counted: the recipients that accepted, when the
    // message as a whole is not acknowledged.
    let accepted = (0..n).filter(|&i| class_of(i) == Class::Accepted).count();
    let risked = duplicates_risked(tx, &whole);
    if matches!(verdict, Verdict::PerRecipient { .. }) {
        assert!(whole.class() != Class::Accepted || risked == 0);
    } else {
        assert_eq!(
            risked,
            if whole.class() == Class::Accepted {
                0
            } else {
                accepted
            }
        );
    }
    // Abandoning early (before the final dot) never changes the class of
    // the answer: it is said only when the answer is a 4xx anyway.
    let used: Vec<Hop> = tx
        .hops
        .iter()
        .enumerate()
        .filter(|(h, _)| tx.recipients.iter().any(|r| r.hop == *h))
        .map(|(_, hop)| *hop)
        .collect();
    if let Some(early) = abandon(tx.prdr, &used) {
        well_formed(&early);
        assert_eq!(early.class(), Class::Deferred);
        assert_eq!(whole.class(), Class::Deferred, "{verdict:?}");
    }
}

/// Every way of giving `n` recipients to `hops` next hops, each hop used.
fn assignments(n: usize, hops: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let total = hops.pow(n as u32);
    for mut code in 0..total {
        let mut a = Vec::with_capacity(n);
        for _ in 0..n {
            a.push(code % hops);
            code /= hops;
        }
        if (0..hops).all(|h| a.contains(&h)) {
            out.push(a);
        }
    }
    out
}

#[test]
fn every_combination_of_next_hop_verdicts_keeps_the_guarantees() {
    let said = [Said::Ok, Said::Temporary, Said::Permanent, Said::Lost];
    let fates = [
        Answer::new(250, [2, 0, 0], "Ok"),
        Answer::new(451, [4, 4, 1], "Next hop not reachable"),
        Answer::new(550, [5, 1, 1], "User unknown"),
    ];
    let mut cases = 0;
    for hops in 1..=3usize {
        for verdicts in 0..said.len().pow(hops as u32) {
            let answers: Vec<Answer> = (0..hops)
                .map(|h| answer(said[verdicts / said.len().pow(h as u32) % said.len()]))
                .collect();
            for n in hops..=4 {
                for assignment in assignments(n, hops) {
                    // NOTIFY wishes: all, none, only the first, all but the
                    // first (the property test below tries the rest).
                    let all = (1u32 << n) - 1;
                    for wishes in [all, 0, 1, all & !1] {
                        for (prdr, null_sender) in
                            [(false, false), (false, true), (true, false), (true, true)]
                        {
                            let case = Case {
                                answers: answers.clone(),
                                recipients: assignment
                                    .iter()
                                    .enumerate()
                                    .map(|(i, &h)| (h, wishes & (1 << i) != 0))
                                    .collect(),
                                prdr,
                                null_sender,
                            };
                            case.check(&fates);
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(cases > 40_000, "{cases}");
}

fn arb_answer() -> impl Strategy<Value = Answer> {
    (
        prop_oneof![Just(250u16), Just(251), 400..460u16, 500..560u16],
        0u8..10,
        0u8..10,
        any::<String>(),
    )
        .prop_map(|(code, s, d, text)| Answer::new(code, [(code / 100) as u8, s, d], text))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any replies a next hop may send (any text: long, Unicode, line
    /// breaks) keep the guarantees and give well-formed replies.
    #[test]
    fn any_next_hop_replies_keep_the_guarantees(
        answers in prop::collection::vec(arb_answer(), 1..=4),
        recipients in prop::collection::vec((0usize..4, any::<bool>()), 1..=5),
        prdr in any::<bool>(),
        null_sender in any::<bool>(),
        notification in arb_answer(),
    ) {
        let hops = answers.len();
        let case = Case {
            recipients: recipients.into_iter().map(|(h, n)| (h % hops, n)).collect(),
            answers,
            prdr,
            null_sender,
        };
        case.check(&[notification]);
    }
}

/// The transaction of the examples: ann at mbx1, bob at the partner.
fn two(a: Said, b: Said, prdr: bool, null_sender: bool) -> Verdict {
    let (a, b) = (answer(a), answer(b));
    let hops = [
        Hop {
            name: NAMES[0],
            answer: &a,
        },
        Hop {
            name: NAMES[1],
            answer: &b,
        },
    ];
    let recipients = [
        Recipient {
            address: ADDRESSES[0],
            hop: 0,
            notify_failure: true,
        },
        Recipient {
            address: ADDRESSES[1],
            hop: 1,
            notify_failure: true,
        },
    ];
    decide(&Transaction {
        hops: &hops,
        recipients: &recipients,
        prdr,
        null_sender,
    })
}

fn reply(v: &Verdict) -> (String, Outcome) {
    match v {
        Verdict::Reply(a, o) => (a.display(), *o),
        other => panic!("not one reply: {other:?}"),
    }
}

#[test]
fn what_the_client_is_told() {
    assert_eq!(
        reply(&two(Said::Ok, Said::Ok, false, false)),
        ("250 2.0.0 Ok: accepted by 2 next hops (SmtpConnector/mbx1: Ok: queued as 4XyZ; SmtpConnector/partner: Ok: queued as 4XyZ)".into(), Outcome::Delivered)
    );
    assert_eq!(
        reply(&two(Said::Permanent, Said::Permanent, false, false)),
        (
            "554 5.7.1 Content refused (SmtpConnector/mbx1; all 2 next hops refused the message)"
                .into(),
            Outcome::Refused
        )
    );
    assert_eq!(
        reply(&two(Said::Ok, Said::Lost, false, false)),
        ("451 4.4.2 Connection to the next hop lost; try again later (SmtpConnector/partner; 1 recipient(s) already accepted by another next hop may get this message twice)".into(), Outcome::PartialDeferred)
    );
    assert_eq!(
        reply(&two(Said::Permanent, Said::Temporary, false, false)),
        ("451 4.3.0 Try again later (SmtpConnector/partner; 0 recipient(s) already accepted by another next hop may get this message twice)".into(), Outcome::Failed)
    );
    assert_eq!(
        reply(&two(Said::Ok, Said::Permanent, false, true)),
        ("250 2.0.0 Ok: accepted for 1 recipient(s); 1 refused (SmtpConnector/partner: 554 5.7.1 Content refused); no notification: the sender is <>".into(), Outcome::PartialNotified)
    );

    let Verdict::NotifyFirst(notify) = two(Said::Ok, Said::Permanent, false, false) else {
        panic!("a notification first")
    };
    assert_eq!(notify.failed, [1]);
    let sent = notify.answer(&Answer::new(250, [2, 0, 0], "Ok"));
    assert_eq!(
        (sent.0.display(), sent.1),
        ("250 2.0.0 Ok: accepted for 1 recipient(s); 1 refused (SmtpConnector/partner: 554 5.7.1 Content refused); the sender is notified".into(), Outcome::PartialNotified)
    );
    let deferred = notify.answer(&Answer::new(451, [4, 4, 1], "down"));
    assert_eq!(
        (deferred.0.display(), deferred.1),
        ("451 4.3.0 <bob@example.com> refused (SmtpConnector/partner: 554 5.7.1 Content refused) and the sender cannot be notified now; try again later (1 recipient(s) already accepted may get this message twice)".into(), Outcome::PartialDeferred)
    );
    let refused = notify.answer(&Answer::new(550, [5, 1, 1], "unknown"));
    assert_eq!(
        (refused.0.display(), refused.1),
        ("554 5.7.1 <bob@example.com> refused (SmtpConnector/partner: 554 5.7.1 Content refused); delivered to 1 other recipient(s); the notification to the sender was refused".into(), Outcome::PartialRefused)
    );

    let Verdict::PerRecipient { replies, last } = two(Said::Ok, Said::Permanent, true, false)
    else {
        panic!("PRDR")
    };
    let replies: Vec<String> = replies.iter().map(Answer::display).collect();
    assert_eq!(
        replies,
        [
            "250 2.0.0 <ann@example.com> Ok: queued as 4XyZ (SmtpConnector/mbx1)",
            "554 5.7.1 <bob@example.com> Content refused (SmtpConnector/partner)",
        ]
    );
    assert_eq!(
        last.display(),
        "250 2.0.0 Ok: accepted for 1 of 2 recipients"
    );
    // PRDR asked for, but one verdict for all: one reply, as without.
    assert_eq!(
        reply(&two(Said::Ok, Said::Ok, true, false)).1,
        Outcome::Delivered
    );
}

#[test]
fn one_next_hop_is_passed_back_as_it_came() {
    let refusal = Answer::new(
        550,
        [5, 1, 1],
        "<x@y> Recipient address rejected: User unknown",
    );
    let hops = [Hop {
        name: NAMES[0],
        answer: &refusal,
    }];
    let recipients = [Recipient {
        address: ADDRESSES[0],
        hop: 0,
        notify_failure: true,
    }];
    let tx = Transaction {
        hops: &hops,
        recipients: &recipients,
        prdr: true,
        null_sender: false,
    };
    assert_eq!(
        decide(&tx),
        Verdict::Reply(refusal.clone(), Outcome::Refused)
    );
    let ok = Answer::new(250, [2, 0, 0], " Ok: queued as SINK1 ");
    let hops = [Hop {
        name: NAMES[0],
        answer: &ok,
    }];
    let tx = Transaction { hops: &hops, ..tx };
    assert_eq!(
        reply(&decide(&tx)).0,
        "250 2.0.0 Ok: accepted by the next hop (Ok: queued as SINK1)"
    );
}

#[test]
fn early_abandon_and_keeping_headers() {
    let (ok, lost, refused) = (
        answer(Said::Ok),
        answer(Said::Lost),
        answer(Said::Permanent),
    );
    let hop = |i: usize, answer| Hop {
        name: NAMES[i],
        answer,
    };
    assert_eq!(
        abandon(false, &[hop(0, &ok), hop(1, &lost)]).map(|a| a.display()),
        Some(
            "451 4.4.2 Connection to the next hop lost; try again later (SmtpConnector/partner)"
                .into()
        )
    );
    assert_eq!(abandon(true, &[hop(0, &ok), hop(1, &lost)]), None);
    assert_eq!(abandon(false, &[hop(0, &ok), hop(1, &refused)]), None);
    assert!(may_notify(false, false, 2, &[false, true]));
    assert!(!may_notify(true, false, 2, &[true]));
    assert!(!may_notify(false, true, 2, &[true]));
    assert!(!may_notify(false, false, 1, &[true]));
    assert!(!may_notify(false, false, 2, &[false, false]));
}
