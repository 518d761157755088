//! The shipped rules on typical messages of every class, Russian and English.
//!
//! These messages were written for the tests from general knowledge of each
//! kind of mail; they are not taken from any corpus.

use leadsift_core::{
    Attachment, CallInfo, Channel, Classification, Classifier, Header, Message, MessengerHandle, PhoneNumber,
    SenderStanding, Verdict,
};

use crate::RuleSet;
use crate::tests::{email, message};

fn classify(m: &Message) -> Classification {
    RuleSet::builtin().classify(m, &SenderStanding::default())
}

#[track_caller]
fn assert_class(m: &Message, expected: Verdict) -> Classification {
    let c = classify(m);
    let fired: Vec<String> = c.reasons.iter().map(|r| format!("{}({:+})", r.rule, r.score)).collect();
    assert_eq!(c.verdict, expected, "confidence {:.2}, reasons {fired:?}\n{:?}: {}", c.confidence, m.subject, m.text);
    c
}

fn fired(c: &Classification, rule: &str) -> bool {
    c.reasons.iter().any(|r| r.rule == rule)
}

fn messenger(text: &str) -> Message {
    let mut m = message(Channel::Messenger, "", text);
    m.sender.handle = Some(MessengerHandle::parse("telegram:100200300").unwrap());
    m
}

fn with_header(mut m: Message, name: &str, value: &str) -> Message {
    m.headers.push(Header { name: name.into(), value: value.into() });
    m
}

#[test]
fn the_builtin_rules_parse_and_are_documented() {
    let rules = RuleSet::builtin();
    assert_eq!(rules.version(), 1);
    assert!(rules.rules().count() >= 60);
    for rule in rules.rules() {
        assert!(!rule.description.is_empty(), "{}", rule.id);
    }
    // The embedded copy is the repository file.
    let from_file =
        RuleSet::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/default.toml")).unwrap();
    assert_eq!(from_file.rules().count(), rules.rules().count());
}

#[test]
fn russian_inquiries_stay_inquiries() {
    assert_class(
        &email(
            "snab@zavod-example.ru",
            "Запрос КП",
            "Добрый день! Наше предприятие планирует закупку 40 шт. насосов ЦНС 38-44. \
             Просим направить коммерческое предложение с ценой и сроками поставки. \
             Реквизиты: ООО «Пример», ИНН 7700000000, р/с 40702810900000000001 в ПАО Сбербанк.",
        ),
        Verdict::Inquiry,
    );
    assert_class(
        &email(
            "ivan@example.ru",
            "Вопрос",
            "Здравствуйте! Сколько стоит доставка в Казань? Хотим заказать две партии.",
        ),
        Verdict::Inquiry,
    );
    let mut form =
        message(Channel::Webform, "", "Имя: Ольга\nТелефон: +7 (916) 204-55-81\nПерезвоните мне, пожалуйста");
    form.sender.name = Some("Ольга".into());
    let c = assert_class(&form, Verdict::Inquiry);
    assert!(fired(&c, "INQUIRY_WEBFORM_PHONE"));
    // A site's form notification comes from noreply@ but is a real request.
    assert_class(
        &email(
            "noreply@site-example.ru",
            "Новая заявка с сайта",
            "Новая заявка с сайта\nИмя: Пётр\nСообщение: нужен расчёт",
        ),
        Verdict::Inquiry,
    );
    assert_class(&messenger("Подскажите, у вас есть в наличии кабель ВВГнг 3х2,5?"), Verdict::Inquiry);
}

#[test]
fn english_inquiries_stay_inquiries() {
    assert_class(
        &email(
            "buyer@company.example.com",
            "Request for quotation",
            "Hello, we would like to order 200 units of the XR-20 valve. Please send a quote with lead time \
             and delivery to Rotterdam. Best regards, Anna",
        ),
        Verdict::Inquiry,
    );
    assert_class(&messenger("Hi, do you ship to Kazakhstan? How much does it cost?"), Verdict::Inquiry);
}

#[test]
fn a_missed_short_call_is_a_lead_not_spam() {
    let mut call = message(Channel::Call, "", "");
    call.sender.phone = Some(PhoneNumber::parse("+79162045581", "RU").unwrap());
    call.call = Some(CallInfo { duration_secs: 3, answered: false });
    let c = assert_class(&call, Verdict::Inquiry);
    assert!(fired(&c, "CALL_MISSED_SHORT"));
    assert!(c.reasons.iter().all(|r| r.class != Some(Verdict::Spam)));
}

#[test]
fn repeated_short_calls_are_spam_but_a_second_try_is_not() {
    let mut call = message(Channel::Call, "", "");
    call.sender.phone = Some(PhoneNumber::parse("+79162045581", "RU").unwrap());
    call.call = Some(CallInfo { duration_secs: 2, answered: false });
    let second = with_header(call.clone(), "X-Leadsift-Recent-Short-Calls", "1");
    assert_class(&second, Verdict::Inquiry);
    let third = with_header(call.clone(), "X-Leadsift-Recent-Short-Calls", "2");
    let c = assert_class(&third, Verdict::Spam);
    assert!(fired(&c, "CALL_REPEATED_SHORT"));
    assert!(c.confidence >= 0.75, "confident enough to be junk, got {:.2}", c.confidence);
    // A real conversation from the same number is not junk however often they called.
    let mut long = with_header(call, "X-Leadsift-Recent-Short-Calls", "5");
    long.call = Some(CallInfo { duration_secs: 240, answered: true });
    assert_class(&long, Verdict::Inquiry);
}

#[test]
fn robocalls_are_spam() {
    let mut call =
        message(Channel::Call, "", "Здравствуйте! Это автоматическое сообщение. Для связи с оператором нажмите 1.");
    call.call = Some(CallInfo { duration_secs: 25, answered: true });
    assert_class(&call, Verdict::Spam);
    call.text =
        "Hello, this is a recorded message about your car's extended warranty. Press 1 to speak to an agent.".into();
    assert_class(&call, Verdict::Spam);
}

#[test]
fn russian_spam_is_spam() {
    assert_class(
        &email(
            "seo@promo-example.ru",
            "Продвижение вашего сайта",
            "Добрый день! Выведем ваш сайт в ТОП Яндекса за 2 недели. Также продаём базы данных предприятий \
             и делаем массовые рассылки по базам. Звоните!",
        ),
        Verdict::Spam,
    );
    assert_class(&messenger("Нужны люди на удаленку, доход от 5000 в день, без опыта. Пиши в лс!"), Verdict::Spam);
    assert_class(&messenger("Срoчнo пoдрaбoткa, зaрaбoтoк без вложений, пишите в личку"), Verdict::Spam);
    assert_class(&messenger("Казино Vavada: фриспины и бездепозитный бонус, заходи по ссылке"), Verdict::Spam);
}

#[test]
fn english_spam_is_spam() {
    assert_class(
        &email(
            "winner@lottery-example.net",
            "YOU HAVE WON!!!",
            "Dear friend, congratulations! You have won $1,000,000. Claim your prize now: click here. \
             This is not spam. To be removed from our list reply with REMOVE in the subject.",
        ),
        Verdict::Spam,
    );
    assert_class(
        &email(
            "mr.james@mail-example.com",
            "Urgent business relationship",
            "I am a barrister to a deceased client who left 15 million united states dollars. As next of kin \
             you will help transfer the funds. Reply in strict confidence.",
        ),
        Verdict::Spam,
    );
    assert_class(
        &email("deals@pharma-example.biz", "ADV: cheap meds", "Buy v1agra and c i a l i s online, no prescription!"),
        Verdict::Spam,
    );
}

#[test]
fn bank_statements_and_notifications_are_bank() {
    assert_class(
        &email(
            "statements@sberbank.ru",
            "Выписка по счёту",
            "Выписка по счёту дебетовой карты за период 01.01.2024 - 31.01.2024\n\
             Остаток на 01.01.2024: 15 000,00\nВсего списаний 3 500,00\nВсего пополнений 10 000,00",
        ),
        Verdict::BankStatement,
    );
    let c = assert_class(
        &email("buh@client-example.ru", "", "1CClientBankExchange\nВерсияФормата=1.03\nКодировка=Windows"),
        Verdict::BankStatement,
    );
    assert!(c.reasons[0].decisive);
    assert_class(
        &email(
            "no.reply.alerts@chase.com",
            "Your statement is ready",
            "Your statement is ready for your account ending in 1234. Available balance: $2,345.10",
        ),
        Verdict::BankStatement,
    );
    assert_class(&messenger("ECMC1234 10:15 Покупка 500р MAGNIT Баланс: 12 345,67р"), Verdict::BankStatement);
    let mut attached = email("notify@tochka.com", "Выписка", "Во вложении выписка по счёту за март.");
    attached.attachments.push(Attachment {
        name: Some("vypiska_2024_03.pdf".into()),
        mime_type: "application/pdf".into(),
        size: 20_000,
    });
    assert_class(&attached, Verdict::BankStatement);
}

#[test]
fn newsletters_are_newsletters() {
    let m = with_header(
        email(
            "news@vendor-example.ru",
            "Приглашаем на вебинар",
            "Приглашаем вас на бесплатный вебинар «Склад 2024». Регистрация открыта.\n\
             Вы получили это письмо, так как подписаны на рассылку. Отписаться от рассылки.",
        ),
        "List-Unsubscribe",
        "<https://vendor-example.ru/unsubscribe>",
    );
    assert_class(&m, Verdict::Newsletter);
    assert_class(
        &email(
            "digest@media-example.com",
            "Weekly digest: top stories",
            "View this email in your browser. In this issue: five top stories of the week. \
             You are receiving this email because you subscribed. Unsubscribe.",
        ),
        Verdict::Newsletter,
    );
    assert_class(
        &email(
            "opt@supplier-example.ru",
            "Обновлённый прайс-лист",
            "Направляем вам обновлённый прайс-лист на май. Новые цены с 1 мая. \
             Если письмо отображается некорректно, откройте веб-версию. Отписаться: ссылка.",
        ),
        Verdict::Newsletter,
    );
}

#[test]
fn job_applications_wrong_numbers_and_personal_messages_are_non_target() {
    let mut cv = email(
        "candidate@mail-example.ru",
        "Резюме на вакансию менеджера",
        "Добрый день! Направляю своё резюме на вакансию менеджера по продажам. Прошу рассмотреть мою кандидатуру.",
    );
    cv.attachments.push(Attachment {
        name: Some("Резюме_Иванова.pdf".into()),
        mime_type: "application/pdf".into(),
        size: 80_000,
    });
    assert_class(&cv, Verdict::NonTarget);
    assert_class(
        &email(
            "john@mail-example.com",
            "Application for the Sales Manager position",
            "Dear hiring manager, please find attached my CV and a cover letter for the position of sales manager.",
        ),
        Verdict::NonTarget,
    );
    assert_class(&messenger("Извините, ошиблась номером"), Verdict::NonTarget);
    assert_class(&messenger("Sorry, wrong number"), Verdict::NonTarget);
    assert_class(&messenger("Мам, купи хлеба, буду поздно. Целую"), Verdict::NonTarget);
    // An accounting question about a wrong account number is not a wrong number.
    assert_ne!(
        classify(&email("buh@client-example.ru", "Счёт", "Вы ошиблись номером счёта в платёжке, поправьте")).verdict,
        Verdict::NonTarget
    );
}

#[test]
fn english_requests_for_quotes_and_suppliers_are_seen() {
    let cases = [
        ("Could you please send us your latest price list and lead times for 200 units?", "INQUIRY_EN_OFFER_REQUEST"),
        ("What are your lead times for 200 units?", "INQUIRY_PRICE_QUESTION"),
        ("Kindly provide me with a quotation for the installation.", "INQUIRY_EN_OFFER_REQUEST"),
        ("We would like to get a quote for cleaning our warehouse every week.", "INQUIRY_EN_QUOTE_WANTED"),
        ("We are currently looking for a reliable packaging supplier in the EU.", "INQUIRY_SUPPLIER_SEARCH"),
        ("I'm looking for a contractor to renovate our office.", "INQUIRY_SUPPLIER_SEARCH"),
        ("Добрый день, ищем поставщика металлочерепицы для объекта в Туле.", "INQUIRY_SUPPLIER_SEARCH"),
    ];
    for (text, rule) in cases {
        let c = assert_class(&email("buyer@company-example.com", "Request", text), Verdict::Inquiry);
        assert!(fired(&c, rule), "{rule} on {text}: {:?}", c.reasons);
    }
    // The pitch that turns the phrase around is not a request.
    let pitch = classify(&email(
        "sales@factory-example.cn",
        "Cooperation",
        "If you are looking for a reliable supplier, we are a leading manufacturer of LED lights.",
    ));
    assert!(!fired(&pitch, "INQUIRY_SUPPLIER_SEARCH"), "{:?}", pitch.reasons);
    let offer = classify(&email("x@spam-example.biz", "Offer", "Send us your bank details to claim the prize."));
    assert!(!fired(&offer, "INQUIRY_EN_OFFER_REQUEST"), "{:?}", offer.reasons);
}

#[test]
fn bank_notices_without_statement_words_are_bank_mail() {
    let push = messenger("Зачисление 18 500,00 ₽ от ИП Смирнова А.В., счёт *4410\nБаланс: 611 204,15 ₽");
    let c = assert_class(&push, Verdict::BankStatement);
    assert!(fired(&c, "BANK_MONEY_MOVEMENT_AMOUNT"), "{:?}", c.reasons);
    let advice = email(
        "alerts@bank-example.com",
        "Debit advice",
        "Your account has been debited with USD 740.00 for an outward transfer.\nAvailable balance: USD 9,312.50\n\
         This is a system generated advice.",
    );
    let c = assert_class(&advice, Verdict::BankStatement);
    assert!(fired(&c, "BANK_BALANCE_FOREIGN_CURRENCY") && fired(&c, "BANK_TRANSACTION_ADVICE"), "{:?}", c.reasons);
    // A client telling us about the payment is not a bank notice.
    let client = email(
        "buh@client-example.ru",
        "Оплата",
        "Добрый день, оплатили счёт №15 на 40 000 руб., пришлите закрывающие документы.",
    );
    assert_class(&client, Verdict::Inquiry);
}

#[test]
fn newsletters_without_an_unsubscribe_line_are_recognised_by_their_shape() {
    let product_news = email(
        "no-reply@app-example.io",
        "What's new in Planner — March",
        "Here's what shipped this month:\n• Recurring tasks\n• Calendar sync for teams\n• Dark mode on the web\n\n\
         Read the release notes on our blog.\n\nThe Planner team",
    );
    let c = assert_class(&product_news, Verdict::Newsletter);
    assert!(fired(&c, "NEWSLETTER_PRODUCT_NEWS") && fired(&c, "NEWSLETTER_TEAM_SIGNOFF"), "{:?}", c.reasons);
    let issue = email(
        "editor@weekly-example.ru",
        "Строительный дайджест, выпуск №31",
        "В этом выпуске:\n1. Цены на металл\n2. Новые СНиПы\n3. Интервью с прорабом\n\nКоманда Стройдайджеста",
    );
    let c = assert_class(&issue, Verdict::Newsletter);
    assert!(fired(&c, "NEWSLETTER_ISSUE_NUMBER") && fired(&c, "NEWSLETTER_TEAM_SIGNOFF"), "{:?}", c.reasons);
    // A client's order with a bulleted list stays an inquiry.
    let order = email(
        "zakup@client-example.ru",
        "Заказ",
        "Здравствуйте, хотим заказать:\n• профнастил С8 — 40 листов\n• саморезы — 5 упаковок\n• конёк — 6 шт\nПришлите счёт.",
    );
    assert_class(&order, Verdict::Inquiry);
}

#[test]
fn bank_security_calls_account_threats_and_pill_shops_are_spam_signs() {
    let mut call = message(
        Channel::Call,
        "",
        "Добрый день, вас беспокоит служба безопасности Альфа-Банка. По вашему счёту подозрительный перевод. \
         Чтобы его отменить, продиктуйте код из СМС.",
    );
    call.call = Some(CallInfo { duration_secs: 95, answered: true });
    call.sender.phone = Some(PhoneNumber::parse("+74951112233", "RU").unwrap());
    let c = assert_class(&call, Verdict::Spam);
    assert!(fired(&c, "CALL_SECURITY_SERVICE_OF_A_BANK"), "{:?}", c.reasons);
    // A client who did not get the order's confirmation code is not a scam call.
    let mut client =
        message(Channel::Call, "", "Здравствуйте, мне не приходит код подтверждения заказа на сайте, помогите.");
    client.call = Some(CallInfo { duration_secs: 70, answered: true });
    let c = assert_class(&client, Verdict::Inquiry);
    assert!(!fired(&c, "CALL_SECURITY_SERVICE_OF_A_BANK"), "{:?}", c.reasons);

    let threat = email(
        "support@portal-verify.example",
        "Доступ будет ограничен",
        "Ваша учетная запись будет заблокирована через 24 часа. Подтвердите свои данные по ссылке.",
    );
    let c = classify(&threat);
    assert!(fired(&c, "SPAM_ACCOUNT_THREAT") && fired(&c, "SPAM_PHISHING"), "{:?}", c.reasons);
    let pills = email("shop@pills.example", "Аптека", "Дженерики из Индии без рецепта, анонимная доставка по России.");
    assert!(fired(&classify(&pills), "SPAM_PHARMA_ADULT"));
}
